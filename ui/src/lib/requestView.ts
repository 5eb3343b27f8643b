// How one ApiRequest is shown: table cells, the detail pane's field groups, bodies, trace links.
import type { ApiRequest, CapturedBody } from "./protocol";

export function formatTime(unixNano: number): string {
  const date = new Date(Math.floor(unixNano / 1e6));
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function formatLatency(seconds: number): string {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 1e-3) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(1)} ms`;
  return `${seconds.toFixed(2)} s`;
}

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function objectName(request: ApiRequest): string {
  if (request.namespace && request.name) return `${request.namespace}/${request.name}`;
  return request.namespace || request.name || "";
}

/** Fields of the detail pane, grouped; a field not named here lands in "Other", so every set field is shown. */
export const FIELD_GROUPS: [string, string[]][] = [
  ["Request", ["verb", "metric_verb", "group", "version", "resource", "subresource", "namespace", "name", "scope", "is_resource_request", "dry_run", "long_running"]],
  ["HTTP", ["method", "path", "query", "code", "protocol", "stream_id", "request_content_type", "response_content_type", "response_content_encoding", "headers_source", "incomplete"]],
  ["Timing and size", ["start_unix_nano", "end_unix_nano", "duration_seconds", "request_body_bytes", "response_body_bytes", "request_wire_bytes", "response_wire_bytes"]],
  ["Client", ["user_agent", "component", "service_account", "impersonation", "peer", "local", "connection", "role"]],
  ["Tracing and fairness", ["audit_id", "traceparent", "flow_schema_uid", "priority_level_uid", "retry_after_seconds"]],
  ["Response", ["object", "status", "watch", "list_items", "decode_errors"]],
  ["Capture", ["capture_level"]],
];
/** Shown in their own section of the pane. */
const BODY_FIELDS = new Set(["request_body", "response_body"]);

export interface FieldGroup {
  name: string;
  fields: { name: string; value: string }[];
}

function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

function display(value: unknown): string {
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export function groupFields(request: ApiRequest): FieldGroup[] {
  const named = new Set<string>();
  const groups: FieldGroup[] = [];
  for (const [name, keys] of FIELD_GROUPS) {
    keys.forEach((k) => named.add(k));
    const fields = keys.filter((k) => isSet(request[k])).map((k) => ({ name: k, value: display(request[k]) }));
    if (fields.length) groups.push({ name, fields });
  }
  const other = Object.keys(request)
    .filter((k) => !named.has(k) && !BODY_FIELDS.has(k) && isSet(request[k]))
    .map((k) => ({ name: k, value: display(request[k]) }));
  if (other.length) groups.push({ name: "Other", fields: other });
  return groups;
}

export type BodyKind = "json" | "yaml" | "protobuf" | "text";

export function bodyKind(contentType: string): BodyKind {
  const type = contentType.toLowerCase();
  if (type.includes("protobuf")) return "protobuf";
  if (type.includes("json")) return "json";
  if (type.includes("yaml")) return "yaml";
  return "text";
}

/** JSON re-indented; YAML and text as sent; for protobuf, the note the server wrote. */
export function prettyBody(body: CapturedBody): string {
  if (bodyKind(body.content_type) === "json") {
    try {
      return JSON.stringify(JSON.parse(body.text), null, 2);
    } catch {
      return body.text; // truncated JSON does not parse: shown as sent
    }
  }
  return body.text;
}

/** The trace id of a W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`), if it is one. */
export function traceIdOf(traceparent: string | undefined): string | null {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent ?? "");
  return match && !/^0+$/.test(match[1]) ? match[1] : null;
}

/**
 * Where Jaeger has this request's span: the client's trace when it sent a traceparent (the span
 * continues it), else a search by audit id (span attribute k8s.apiserver.audit_id, docs/telemetry.md).
 */
export function traceLink(jaegerBase: string | null, request: ApiRequest): string | null {
  if (!jaegerBase) return null;
  const base = jaegerBase.replace(/\/+$/, "");
  const traceId = traceIdOf(request.traceparent);
  if (traceId) return `${base}/trace/${traceId}`;
  if (!request.audit_id) return null;
  const tags = JSON.stringify({ "k8s.apiserver.audit_id": request.audit_id });
  return `${base}/api/traces?service=kube-apiserver&tags=${encodeURIComponent(tags)}`;
}

/** A line with a caret under `column` (1-based, in characters), to point at a filter error. */
export function caretLine(column: number | undefined): string {
  if (!column || column < 1) return "";
  return " ".repeat(column - 1) + "^";
}

/** The table's columns, in characters of the monospace font. */
export const COLUMNS: { name: string; width: number; right?: boolean }[] = [
  { name: "time", width: 12 },
  { name: "client", width: 22 },
  { name: "verb", width: 8 },
  { name: "resource", width: 22 },
  { name: "namespace/name", width: 36 },
  { name: "code", width: 4, right: true },
  { name: "latency", width: 9, right: true },
  { name: "req", width: 9, right: true },
  { name: "resp", width: 9, right: true },
];

/** A cell cut or padded to its column's width (an ellipsis marks a cut). */
export function fitCell(text: string, width: number, right = false): string {
  const chars = Array.from(text);
  const fitted = chars.length > width ? chars.slice(0, width - 1).join("") + "…" : text;
  const pad = " ".repeat(Math.max(0, width - Math.min(chars.length, width)));
  return right ? pad + fitted : fitted + pad;
}

/** The row as one line of fixed-width cells, split around the code (which is coloured). */
export function rowLine(cells: string[]): { before: string; code: string; after: string } {
  const fitted = cells.map((cell, i) => fitCell(cell, COLUMNS[i].width, COLUMNS[i].right));
  return { before: fitted.slice(0, 5).join(" ") + " ", code: fitted[5], after: " " + fitted.slice(6).join(" ") };
}

export const HEADER_LINE = COLUMNS.map((c) => fitCell(c.name, c.width, c.right)).join(" ");
