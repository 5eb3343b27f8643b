import { describe, expect, it } from "vitest";
import type { ApiRequest } from "./protocol";
import { caretLine, formatLatency, groupFields, objectName, prettyBody, traceIdOf, traceLink } from "./requestView";

const request: ApiRequest = {
  audit_id: "abc-123",
  start_unix_nano: 1,
  end_unix_nano: 2,
  duration_seconds: 0.0123,
  verb: "create",
  resource: "secrets",
  namespace: "ns",
  name: "s",
  code: 201,
  query: "",
  decode_errors: [],
  component: "kubectl",
  some_new_field: { x: 1 },
  request_body: { content_type: "application/json", text: "{}" },
};

describe("request view", () => {
  it("groups every set field, empty ones left out, unknown ones under Other", () => {
    const groups = groupFields(request);
    const names = groups.flatMap((g) => g.fields.map((f) => f.name));
    expect(names).toContain("verb");
    expect(names).toContain("audit_id");
    expect(names).not.toContain("query");
    expect(names).not.toContain("decode_errors");
    expect(names).not.toContain("request_body");
    expect(groups.at(-1)).toEqual({ name: "Other", fields: [{ name: "some_new_field", value: '{"x":1}' }] });
  });

  it("pretty-prints JSON, leaves YAML, protobuf notes and broken JSON as they are", () => {
    expect(prettyBody({ content_type: "application/json", text: '{"a":[1]}' })).toBe('{\n  "a": [\n    1\n  ]\n}');
    expect(prettyBody({ content_type: "application/json", text: '{"a":', truncated: true })).toBe('{"a":');
    expect(prettyBody({ content_type: "application/apply-patch+yaml", text: "a:  1\n" })).toBe("a:  1\n");
    expect(prettyBody({ content_type: "application/vnd.kubernetes.protobuf", text: "protobuf ConfigMap, 312 bytes" })).toBe("protobuf ConfigMap, 312 bytes");
  });

  it("links the trace: by the client's trace id, else by audit id", () => {
    expect(traceLink(null, request)).toBeNull();
    const byAudit = traceLink("http://jaeger:16686/", request)!;
    expect(byAudit.startsWith("http://jaeger:16686/api/traces?service=kube-apiserver&tags=")).toBe(true);
    expect(JSON.parse(decodeURIComponent(byAudit.split("tags=")[1]))).toEqual({ "k8s.apiserver.audit_id": "abc-123" });
    const traced = { ...request, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
    expect(traceLink("http://j", traced)).toBe("http://j/trace/4bf92f3577b34da6a3ce929d0e0e4736");
    expect(traceIdOf("00-00000000000000000000000000000000-00f067aa0ba902b7-01")).toBeNull();
    expect(traceIdOf("garbage")).toBeNull();
    expect(traceLink("http://j", { ...request, audit_id: undefined })).toBeNull();
  });

  it("formats cells and the filter error caret", () => {
    expect(formatLatency(0.0123)).toBe("12.3 ms");
    expect(formatLatency(0.0000042)).toBe("4 µs");
    expect(formatLatency(2.5)).toBe("2.50 s");
    expect(objectName(request)).toBe("ns/s");
    expect(caretLine(4)).toBe("   ^");
    expect(caretLine(undefined)).toBe("");
  });
});

describe("table line", () => {
  it("fits cells to fixed widths so a monospace line lines up", async () => {
    const { COLUMNS, HEADER_LINE, fitCell, rowLine } = await import("./requestView");
    expect(fitCell("kubelet", 5)).toBe("kube…");
    expect(fitCell("ab", 4)).toBe("ab  ");
    expect(fitCell("200", 4, true)).toBe(" 200");
    expect(fitCell("ünï", 3)).toBe("ünï");
    const line = rowLine(["12:00:00.000", "kubectl", "get", "pods", "default/p", "200", "1.0 ms", "0 B", "10 B"]);
    const width = COLUMNS.reduce((sum, c) => sum + c.width, 0) + COLUMNS.length - 1;
    expect(Array.from(line.before + line.code + line.after)).toHaveLength(width);
    expect(HEADER_LINE).toHaveLength(width);
    expect(line.code).toBe(" 200");
  });
});
