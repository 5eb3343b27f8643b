// The live view's WebSocket protocol v1 (docs/live-view.md): message types and a parser that
// never throws on what the server sends.

/** The JSON of one ApiRequest (docs/api-request.md); fields that are empty are left out. */
export interface ApiRequest {
  audit_id?: string;
  start_unix_nano: number;
  end_unix_nano: number;
  duration_seconds: number;
  verb: string;
  metric_verb?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  path?: string;
  code?: number;
  component?: string;
  user_agent?: string;
  request_body_bytes?: number;
  response_body_bytes?: number;
  traceparent?: string;
  request_body?: CapturedBody;
  response_body?: CapturedBody;
  [field: string]: unknown;
}

export interface CapturedBody {
  content_type: string;
  text: string;
  truncated?: boolean;
  redacted?: boolean;
}

export interface Row {
  id: number;
  request: ApiRequest;
}

export interface Frame {
  direction: "request" | "response";
  type: string;
  flags: string[];
  stream_id: number;
  length: number;
  unix_nano?: number;
}

/** `GET /api/v1/requests/{id}`. */
export interface RequestDetail {
  id: number;
  request: ApiRequest;
  frames: Frame[];
  request_bytes?: string;
  response_bytes?: string;
}

export type ServerMessage =
  | { type: "hello"; protocol: number; mode: string; server: string; max_history: number; jaeger_url?: string }
  | { type: "requests"; items: Row[] }
  | { type: "history_end"; count: number }
  | { type: "dropped"; count: number; reason: string }
  | { type: "error"; message: string; column?: number };

export interface SubscribeMessage {
  type: "subscribe";
  filter: string;
  history: { limit: number; since_unix_nano: number | null };
}

export function subscribeMessage(filter: string, limit: number, sinceUnixNano: number | null): SubscribeMessage {
  return { type: "subscribe", filter, history: { limit, since_unix_nano: sinceUnixNano } };
}

function isRow(value: unknown): value is Row {
  if (typeof value !== "object" || value === null) return false;
  const row = value as Record<string, unknown>;
  return typeof row.id === "number" && typeof row.request === "object" && row.request !== null;
}

/** Parses one text frame; `null` for anything that is not a well-formed v1 message. */
export function parseServerMessage(text: string): ServerMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const msg = value as Record<string, unknown>;
  switch (msg.type) {
    case "hello":
      return {
        type: "hello",
        protocol: Number(msg.protocol),
        mode: String(msg.mode ?? ""),
        server: String(msg.server ?? ""),
        max_history: Number(msg.max_history ?? 0),
        jaeger_url: typeof msg.jaeger_url === "string" ? msg.jaeger_url : undefined,
      };
    case "requests":
      return { type: "requests", items: Array.isArray(msg.items) ? msg.items.filter(isRow) : [] };
    case "history_end":
      return { type: "history_end", count: Number(msg.count ?? 0) };
    case "dropped":
      return { type: "dropped", count: Number(msg.count ?? 0), reason: String(msg.reason ?? "") };
    case "error":
      return {
        type: "error",
        message: String(msg.message ?? "error"),
        column: typeof msg.column === "number" ? msg.column : undefined,
      };
    default:
      return null;
  }
}
