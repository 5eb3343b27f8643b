import { describe, expect, it } from "vitest";
import { FrameBatcher } from "./frameBatcher";
import { LiveView } from "./liveView";
import { parseServerMessage, type Row } from "./protocol";
import { RowStore } from "./rowStore";

const row = (id: number, endSecond = id): Row => ({
  id,
  request: { start_unix_nano: endSecond * 1e9, end_unix_nano: endSecond * 1e9, duration_seconds: 0, verb: "get", component: "kubelet", resource: "pods", code: 200 },
});

/** A scheduler that runs the frame callback when the test says so. */
function manualFrames() {
  const queued: (() => void)[] = [];
  return { schedule: (cb: () => void) => void queued.push(cb), frame: () => queued.splice(0).forEach((cb) => cb()), get queued() { return queued.length; } };
}

describe("protocol messages", () => {
  it("parses every v1 server message and ignores anything else", () => {
    expect(parseServerMessage('{"type":"hello","protocol":1,"mode":"serve-ui","server":"apiscope 0.1","max_history":1000}')).toEqual({
      type: "hello", protocol: 1, mode: "serve-ui", server: "apiscope 0.1", max_history: 1000, jaeger_url: undefined,
    });
    expect(parseServerMessage('{"type":"requests","items":[{"id":1,"request":{"verb":"get"}},{"id":"x"},null]}')).toEqual({
      type: "requests", items: [{ id: 1, request: { verb: "get" } }],
    });
    expect(parseServerMessage('{"type":"history_end","count":3}')).toEqual({ type: "history_end", count: 3 });
    expect(parseServerMessage('{"type":"dropped","count":9,"reason":"slow_client"}')).toEqual({ type: "dropped", count: 9, reason: "slow_client" });
    expect(parseServerMessage('{"type":"error","message":"expected a value","column":8}')).toEqual({ type: "error", message: "expected a value", column: 8 });
    for (const junk of ["", "{", "null", "[]", '"x"', '{"type":"future"}', '{"type":"requests","items":5}'])
      expect(parseServerMessage(junk) ?? { type: "requests", items: [] }).toMatchObject({});
    expect(parseServerMessage('{"type":"future"}')).toBeNull();
    expect(parseServerMessage('{"type":"requests","items":5}')).toEqual({ type: "requests", items: [] });
  });
});

describe("batching per animation frame", () => {
  it("applies all messages of a frame at once, and one frame is scheduled at a time", () => {
    const frames = manualFrames();
    const applied: number[] = [];
    const batcher = new FrameBatcher((rows) => applied.push(rows.length), 1000, frames.schedule);
    for (let i = 0; i < 100; i++) batcher.push([row(i)]);
    expect(frames.queued).toBe(1);
    expect(applied).toEqual([]);
    frames.frame();
    expect(applied).toEqual([100]);
    frames.frame();
    expect(applied).toEqual([100]);
  });

  it("bounds the queue when no frame comes, dropping the oldest", () => {
    const frames = manualFrames();
    let got: Row[] = [];
    const batcher = new FrameBatcher((rows) => (got = rows), 10, frames.schedule);
    batcher.push(Array.from({ length: 25 }, (_, i) => row(i)));
    expect(batcher.pendingCount).toBe(10);
    expect(batcher.droppedPending).toBe(15);
    frames.frame();
    expect(got.map((r) => r.id)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
  });

  it("the store keeps at most its capacity, dropping the oldest, counted", () => {
    const store = new RowStore(3);
    expect(store.append([row(1), row(2)])).toBe(0);
    expect(store.append([row(3), row(4), row(5)])).toBe(2);
    expect(store.rows.map((r) => r.id)).toEqual([3, 4, 5]);
    expect(store.evicted).toBe(2);
  });
});

describe("live view state", () => {
  it("turns messages into rows, notices and filter errors", () => {
    const frames = manualFrames();
    const appliedCalls: [number, number][] = [];
    const view = new LiveView({ capacity: 5, scheduler: frames.schedule, onApplied: (a, e) => appliedCalls.push([a, e]) });
    view.handle({ type: "hello", protocol: 1, mode: "relay", server: "s", max_history: 10 });
    view.handle({ type: "requests", items: [row(1), row(2), row(3)] });
    view.handle({ type: "requests", items: [row(4), row(5), row(6)] });
    view.handle({ type: "history_end", count: 6 });
    expect(view.store.rows).toHaveLength(0);
    frames.frame();
    // The queue holds one store's worth: the oldest row was dropped before the frame.
    expect(appliedCalls).toEqual([[5, 0]]);
    expect(view.store.rows.map((r) => r.id)).toEqual([2, 3, 4, 5, 6]);
    expect(view.browserDropped).toBe(1);
    expect(view.historyDone).toBe(true);
    expect(view.clientMap.snapshot(6_000).edges[0].count).toBe(6);

    view.handle({ type: "dropped", count: 40, reason: "slow_client" });
    view.handle({ type: "dropped", count: 2, reason: "slow_client" });
    expect([view.serverDropped, view.droppedNotices]).toEqual([42, 2]);

    view.handle({ type: "error", message: "unexpected token", column: 6 });
    expect(view.filterError).toEqual({ message: "unexpected token", column: 6 });
  });

  it("paused: new rows are counted for the badge", () => {
    const frames = manualFrames();
    const view = new LiveView({ scheduler: frames.schedule });
    view.follow.onScroll(100, 100);
    view.follow.onScroll(50, 100);
    view.handle({ type: "requests", items: [row(1), row(2)] });
    frames.frame();
    expect(view.follow.unseen).toBe(2);
  });

  it("subscribes fresh, resumes after a reconnect from the last row, and starts over on a new filter", () => {
    const frames = manualFrames();
    const view = new LiveView({ scheduler: frames.schedule });
    view.filter = 'verb == "get"';
    expect(view.subscription()).toEqual({ type: "subscribe", filter: 'verb == "get"', history: { limit: 500, since_unix_nano: null } });
    view.handle({ type: "requests", items: [row(7, 70)] });
    // Reconnect: queued rows are applied first, history resumes after the last one.
    expect(view.subscription().history.since_unix_nano).toBe(70e9 + 1);
    view.handle({ type: "error", message: "x" });
    view.setFilter("code >= 500");
    expect(view.store.rows).toHaveLength(0);
    expect(view.filterError).toBeNull();
    expect(view.subscription()).toEqual({ type: "subscribe", filter: "code >= 500", history: { limit: 500, since_unix_nano: null } });
  });
});
