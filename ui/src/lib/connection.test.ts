import { describe, expect, it } from "vitest";
import { BACKOFF_MAX_MS, LiveConnection, backoffDelay, httpAuthProbe, streamUrl, type ConnectionState, type SocketLike } from "./connection";
import { subscribeMessage } from "./protocol";

class FakeSocket implements SocketLike {
  protocol = "";
  sent: string[] = [];
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: unknown) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  constructor(readonly url: string, readonly protocols: string[]) {}
  send(data: string) { this.sent.push(data); }
  close() { this.onclose?.({}); }
  accept() { this.protocol = "apiscope.v1"; this.onopen?.({}); }
  receive(message: object) { this.onmessage?.({ data: JSON.stringify(message) }); }
}

function harness(probe: "accepted" | "refused" = "accepted", token: string | null = "tok") {
  const sockets: FakeSocket[] = [];
  const states: [ConnectionState, number | undefined][] = [];
  const timers: [() => void, number][] = [];
  const messages: string[] = [];
  const connection = new LiveConnection({
    url: "ws://h/api/v1/stream",
    token,
    subscription: () => subscribeMessage("", 500, null),
    onMessage: (m) => messages.push(m.type),
    onState: (s, ms) => states.push([s, ms]),
    createSocket: (url, protocols) => { const s = new FakeSocket(url, protocols); sockets.push(s); return s; },
    probeAuth: async () => probe,
    setTimer: (cb, ms) => timers.push([cb, ms]),
    random: () => 1,
  });
  return { connection, sockets, states, timers, messages };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("connection", () => {
  it("offers the token subprotocols, subscribes on open, is live on hello", () => {
    const h = harness();
    h.connection.start();
    const socket = h.sockets[0];
    expect(socket.protocols).toEqual(["apiscope.v1", "base64url.bearer.apiscope.dG9r"]);
    socket.accept();
    expect(JSON.parse(socket.sent[0])).toEqual({ type: "subscribe", filter: "", history: { limit: 500, since_unix_nano: null } });
    socket.receive({ type: "hello", protocol: 1, mode: "serve-ui", server: "s", max_history: 1 });
    socket.receive({ type: "requests", items: [] });
    expect(h.states.map((s) => s[0])).toEqual(["connecting", "live"]);
    expect(h.messages).toEqual(["hello", "requests"]);
  });

  it("reconnects with growing backoff after the server goes away, and resets it on hello", async () => {
    const h = harness();
    h.connection.start();
    h.sockets[0].accept();
    h.sockets[0].receive({ type: "hello", protocol: 1, mode: "serve-ui", server: "s", max_history: 1 });
    h.sockets[0].close();
    expect(h.timers.map((t) => t[1])).toEqual([500]);
    h.timers[0][0]();
    h.sockets[1].close(); // refused before open: asks the probe, which accepts the token
    await settle();
    expect(h.timers.map((t) => t[1])).toEqual([500, 1000]);
    expect(h.states.at(-1)).toEqual(["reconnecting", 1000]);
    h.timers[1][0]();
    h.sockets[2].accept();
    h.sockets[2].receive({ type: "hello", protocol: 1, mode: "serve-ui", server: "s", max_history: 1 });
    h.sockets[2].close();
    expect(h.timers.at(-1)![1]).toBe(500);
  });

  it("stops at 'refused' when the token is refused", async () => {
    const h = harness("refused");
    h.connection.start();
    h.sockets[0].close();
    await settle();
    expect(h.states.at(-1)![0]).toBe("refused");
    expect(h.timers).toHaveLength(0);
  });

  it("without a token, does not connect", () => {
    const h = harness("accepted", null);
    h.connection.start();
    expect(h.sockets).toHaveLength(0);
    expect(h.states).toEqual([["no-token", undefined]]);
  });

  it("backoff doubles to a cap, with jitter", () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, () => 1))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffDelay(40, () => 1)).toBe(BACKOFF_MAX_MS);
    expect(backoffDelay(0, () => 0)).toBe(250);
  });

  it("builds the stream URL and probes the token over HTTP", async () => {
    expect(streamUrl({ protocol: "https:", host: "h:1" })).toBe("wss://h:1/api/v1/stream");
    expect(streamUrl({ protocol: "http:", host: "h" })).toBe("ws://h/api/v1/stream");
    const seen: unknown[] = [];
    const fetchWith = (status: number) => (async (_url: unknown, init: unknown) => { seen.push(init); return { status } as Response; }) as typeof fetch;
    expect(await httpAuthProbe("tok", fetchWith(401))()).toBe("refused");
    expect(await httpAuthProbe("tok", fetchWith(404))()).toBe("accepted");
    expect(seen[0]).toEqual({ headers: { Authorization: "Bearer tok" } });
    expect(await httpAuthProbe("tok", (async () => { throw new Error("down"); }) as typeof fetch)()).toBe("unknown");
  });
});
