#!/usr/bin/env node
// DEVELOPMENT AID ONLY: a stand-in for `apiscope capture --serve-ui` that speaks the live view's
// protocol v1 (docs/live-view.md) with synthetic rows, so the UI can be developed and benchmarked
// without a cluster. It is not apiscope: no test that claims to test the real server uses it.
// Its filter is a toy (`field op value [and ...]`), not the real filter language.
//
//   node dev/dev-server.mjs                 # http://127.0.0.1:8089/#token=dev-token
//   DEV_PORT=8089 DEV_TOKEN=dev-token DEV_RATE=200 node dev/dev-server.mjs
//   curl -X POST 'http://127.0.0.1:8089/dev/rate?rows=5000'   # change the rate while it runs
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";

const DIST = fileURLToPath(new URL("../dist/", import.meta.url));
const PROTOCOL = "apiscope.v1";
const BEARER_PREFIX = "base64url.bearer.apiscope.";
const KEPT = 20_000;
const MAX_BUFFERED = 8 * 1024 * 1024;
const MIME = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

/** A planted secret: the dev server never sends it; the e2e run against it checks that. */
export const DEV_PLANTED_SECRET = "dev-planted-s3cr3t-value";

const COMPONENTS = ["kubectl", "kube-controller-manager", "kubelet", "kube-scheduler", "coredns"];
const RESOURCES = ["pods", "configmaps", "leases", "nodes", "secrets", "events", "deployments", "endpointslices"];
const VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"];
const NAMESPACES = ["default", "kube-system", "kube-node-lease", "demo"];

function pick(array, n) {
  return array[n % array.length];
}

function syntheticRequest(id) {
  const now = BigInt(Date.now()) * 1_000_000n;
  const verb = pick(VERBS, id * 7 + (id >> 3));
  const resource = pick(RESOURCES, id * 3 + (id >> 2));
  const namespace = pick(NAMESPACES, id);
  const name = `${resource.replace(/s$/, "")}-${id % 50}`;
  const code = id % 97 === 0 ? 500 : id % 13 === 0 ? 404 : verb === "create" ? 201 : 200;
  const duration = 0.0005 + ((id * 7919) % 1000) / 20000;
  const secret = resource === "secrets" && verb === "create";
  const request = {
    audit_id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
    start_unix_nano: Number(now) - Math.round(duration * 1e9),
    end_unix_nano: Number(now),
    duration_seconds: duration,
    verb,
    metric_verb: verb.toUpperCase(),
    is_resource_request: true,
    version: "v1",
    resource,
    namespace,
    name: verb === "list" || verb === "watch" ? undefined : name,
    scope: "resource",
    dry_run: false,
    long_running: verb === "watch",
    method: { get: "GET", list: "GET", watch: "GET", create: "POST", update: "PUT", patch: "PATCH", delete: "DELETE" }[verb],
    path: `/api/v1/namespaces/${namespace}/${resource}`,
    code,
    protocol: "2",
    stream_id: 1 + 2 * (id % 1000),
    response_content_type: "application/json",
    request_body_bytes: secret ? 96 : 0,
    response_body_bytes: 200 + (id % 900),
    request_wire_bytes: 120 + (secret ? 96 : 0),
    response_wire_bytes: 300 + (id % 900),
    headers_source: "wire",
    user_agent: `${pick(COMPONENTS, id)}/v1.37.2 (linux/amd64) kubernetes/dev`,
    component: pick(COMPONENTS, id),
    peer: "127.0.0.1:51234",
    local: "127.0.0.1:6443",
    connection: { pid: 4242, conn_ptr: 824634335232, first_seen_ns: 81237700000 },
    role: "server",
    capture_level: secret ? "Request" : "Metadata",
  };
  if (secret) {
    request.request_content_type = "application/json";
    request.request_body = {
      content_type: "application/json",
      text: JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name }, data: { password: "[REDACTED]" } }),
      redacted: true,
    };
  }
  if (request.name === undefined) delete request.name;
  return request;
}

function framesOf(request) {
  const at = request.end_unix_nano;
  const frames = [{ direction: "request", type: "HEADERS", flags: request.request_body ? ["END_HEADERS"] : ["END_STREAM", "END_HEADERS"], stream_id: request.stream_id, length: 120, unix_nano: request.start_unix_nano }];
  if (request.request_body) frames.push({ direction: "request", type: "DATA", flags: ["END_STREAM"], stream_id: request.stream_id, length: request.request_body_bytes, unix_nano: request.start_unix_nano });
  frames.push({ direction: "response", type: "HEADERS", flags: ["END_HEADERS"], stream_id: request.stream_id, length: 80, unix_nano: at });
  frames.push({ direction: "response", type: "DATA", flags: ["END_STREAM"], stream_id: request.stream_id, length: request.response_body_bytes, unix_nano: at });
  return frames;
}

// The toy filter: `field op value` joined by `and`; errors carry a 1-based column.
const FIELDS = { verb: "verb", resource: "resource", namespace: "namespace", name: "name", code: "code", client: "component", component: "component", user_agent: "user_agent", latency: "duration_seconds" };
export function compileToyFilter(text) {
  const tokens = [];
  const re = /\s*(?:("(?:[^"\\]|\\.)*")|(==|!=|=~|>=|<=|>|<)|([A-Za-z_][A-Za-z0-9_]*)|([0-9.]+(?:ms|s)?))/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) {
      if (/^\s*$/.test(text.slice(at))) break;
      return { error: "unexpected character", column: at + 1 + (text.slice(at).length - text.slice(at).trimStart().length) };
    }
    const column = m.index + (m[0].length - m[0].trimStart().length) + 1;
    if (m[1]) tokens.push({ kind: "value", value: JSON.parse(m[1]), column });
    else if (m[2]) tokens.push({ kind: "op", value: m[2], column });
    else if (m[3]) tokens.push({ kind: m[3] === "and" ? "and" : m[3] === "contains" ? "op" : "ident", value: m[3], column });
    else tokens.push({ kind: "value", value: /ms$/.test(m[4]) ? parseFloat(m[4]) / 1000 : parseFloat(m[4]), column });
    at = re.lastIndex;
  }
  const clauses = [];
  for (let i = 0; i < tokens.length; ) {
    const [field, op, value] = [tokens[i], tokens[i + 1], tokens[i + 2]];
    if (!field || field.kind !== "ident" || !FIELDS[field.value]) return { error: "expected a field name", column: field?.column ?? text.length + 1 };
    if (!op || op.kind !== "op") return { error: "expected an operator", column: op?.column ?? text.length + 1 };
    if (!value || value.kind !== "value") return { error: "expected a value", column: value?.column ?? text.length + 1 };
    clauses.push({ field: FIELDS[field.value], op: op.value, value: value.value });
    i += 3;
    if (i < tokens.length) {
      if (tokens[i].kind !== "and") return { error: "expected `and`", column: tokens[i].column };
      i++;
      if (i >= tokens.length) return { error: "expected a field name", column: text.length + 1 };
    }
  }
  const test = (request) =>
    clauses.every(({ field, op, value }) => {
      const actual = request[field];
      switch (op) {
        case "==": return actual === value;
        case "!=": return actual !== value;
        case "=~": return new RegExp(`^(?:${value})$`).test(String(actual ?? ""));
        case "contains": return String(actual ?? "").includes(String(value));
        case ">": return actual > value;
        case ">=": return actual >= value;
        case "<": return actual < value;
        case "<=": return actual <= value;
      }
      return false;
    });
  return { test };
}

export function startDevServer({ port = 8089, host = "127.0.0.1", token = "dev-token", rate = 200 } = {}) {
  let rowsPerSecond = rate;
  let nextId = 1;
  const kept = new Map();
  const clients = new Set();
  const expected = BEARER_PREFIX + Buffer.from(token).toString("base64url");
  const authorized = (req) => req.headers.authorization === `Bearer ${token}`;

  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/healthz") return res.end("ok");
    if (url.pathname === "/dev/rate" && req.method === "POST") {
      rowsPerSecond = Math.max(0, Number(url.searchParams.get("rows") ?? 0));
      return res.end(`rate ${rowsPerSecond}\n`);
    }
    const detail = /^\/api\/v1\/requests\/(\d+)$/.exec(url.pathname);
    if (detail) {
      if (!authorized(req)) return res.writeHead(401).end("token refused\n");
      const request = kept.get(Number(detail[1]));
      if (!request) return res.writeHead(404).end("not held\n");
      const body = { id: Number(detail[1]), request, frames: framesOf(request) };
      if (request.request_body) body.request_bytes = Buffer.from(request.request_body.text).toString("base64");
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(body));
    }
    const file = normalize(url.pathname === "/" ? "index.html" : url.pathname.slice(1));
    if (file.startsWith("..")) return res.writeHead(404).end();
    try {
      const content = await readFile(join(DIST, file));
      res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream" });
      res.end(content);
    } catch {
      res.writeHead(404).end("not found (run `npm run build` first)\n");
    }
  });

  const wss = new WebSocketServer({ noServer: true, handleProtocols: () => PROTOCOL });
  server.on("upgrade", (req, socket, head) => {
    const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
    if (new URL(req.url, "http://x").pathname !== "/api/v1/stream" || !offered.includes(PROTOCOL) || !offered.includes(expected)) {
      socket.end("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const client = { ws, filter: null, dropped: 0 };
      clients.add(client);
      ws.send(JSON.stringify({ type: "hello", protocol: 1, mode: "serve-ui", server: "apiscope-ui dev-server", max_history: KEPT }));
      ws.on("message", (data) => {
        let msg;
        try { msg = JSON.parse(String(data)); } catch { return; }
        if (msg.type !== "subscribe") return;
        const compiled = msg.filter ? compileToyFilter(msg.filter) : { test: () => true };
        if (compiled.error) {
          client.filter = null;
          return ws.send(JSON.stringify({ type: "error", message: compiled.error, column: compiled.column }));
        }
        client.filter = compiled.test;
        const limit = Math.min(Number(msg.history?.limit ?? 500), KEPT);
        const since = msg.history?.since_unix_nano;
        let history = [...kept].filter(([, r]) => compiled.test(r) && (since == null || r.end_unix_nano >= since));
        history = since == null ? history.slice(-limit) : history.slice(0, limit);
        for (let i = 0; i < history.length; i += 500)
          ws.send(JSON.stringify({ type: "requests", items: history.slice(i, i + 500).map(([id, request]) => ({ id, request })) }));
        ws.send(JSON.stringify({ type: "history_end", count: history.length }));
      });
      ws.on("close", () => clients.delete(client));
    });
  });

  let carry = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    carry += ((now - last) / 1000) * rowsPerSecond;
    last = now;
    const n = Math.floor(carry);
    carry -= n;
    if (n === 0) return;
    const rows = [];
    for (let i = 0; i < n; i++) {
      const id = nextId++;
      const request = syntheticRequest(id);
      kept.set(id, request);
      rows.push({ id, request });
    }
    for (const id of kept.keys()) {
      if (kept.size <= KEPT) break;
      kept.delete(id);
    }
    for (const client of clients) {
      if (!client.filter) continue;
      const items = rows.filter((row) => client.filter(row.request));
      if (items.length === 0) continue;
      if (client.ws.bufferedAmount > MAX_BUFFERED) {
        client.dropped += items.length;
        continue;
      }
      if (client.dropped) {
        client.ws.send(JSON.stringify({ type: "dropped", count: client.dropped, reason: "slow_client" }));
        client.dropped = 0;
      }
      client.ws.send(JSON.stringify({ type: "requests", items }));
    }
  }, 10);

  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const address = server.address();
      resolve({
        url: `http://${host}:${address.port}`,
        token,
        setRate: (value) => (rowsPerSecond = value),
        close: () => {
          clearInterval(timer);
          for (const client of clients) client.ws.terminate();
          wss.close();
          return new Promise((done) => server.close(done));
        },
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dev = await startDevServer({
    port: Number(process.env.DEV_PORT ?? 8089),
    token: process.env.DEV_TOKEN ?? "dev-token",
    rate: Number(process.env.DEV_RATE ?? 200),
  });
  console.log(`dev server (synthetic rows, not apiscope): ${dev.url}/#token=${dev.token}`);
}
