import { describe, expect, it } from "vitest";
import { ClientMap, MAX_NODES, OTHER, isError, resourceOf } from "./clientMap";
import type { ApiRequest } from "./protocol";

const at = (second: number, component: string, resource: string, code?: number): ApiRequest => ({
  start_unix_nano: second * 1e9,
  end_unix_nano: second * 1e9 + 5e8,
  duration_seconds: 0.001,
  verb: "get",
  component,
  resource,
  code,
});

describe("client map", () => {
  it("sums rates and error shares per client and resource over the window", () => {
    const map = new ClientMap(10);
    for (let s = 100; s < 110; s++) map.add(at(s, "kubelet", "pods", 200));
    map.add(at(105, "kubelet", "pods", 500));
    map.add(at(105, "kubectl", "secrets", 403));
    map.add(at(106, "kubectl", "secrets", 200));
    const snapshot = map.snapshot(109_999);
    expect(snapshot.clients).toEqual(["kubectl", "kubelet"]);
    expect(snapshot.resources).toEqual(["pods", "secrets"]);
    const pods = snapshot.edges.find((e) => e.resource === "pods")!;
    expect(pods).toMatchObject({ client: "kubelet", count: 11, errors: 1 });
    expect(pods.rate).toBeCloseTo(1.1);
    expect(snapshot.edges.find((e) => e.resource === "secrets")!.errorRate).toBe(0.5);
  });

  it("forgets what left the window", () => {
    const map = new ClientMap(5);
    map.add(at(100, "kubelet", "pods", 200));
    map.add(at(104, "kubectl", "pods", 200));
    expect(map.snapshot(104_000).edges).toHaveLength(2);
    expect(map.snapshot(105_000).edges.map((e) => e.client)).toEqual(["kubectl"]);
    expect(map.snapshot(200_000).edges).toEqual([]);
  });

  it("bounds the nodes it keeps", () => {
    const map = new ClientMap(60);
    for (let i = 0; i < MAX_NODES + 10; i++) map.add(at(100, `client-${i}`, "pods", 200));
    const snapshot = map.snapshot(100_000);
    expect(snapshot.clients).toHaveLength(MAX_NODES + 1);
    expect(snapshot.edges.find((e) => e.client === OTHER)!.count).toBe(10);
  });

  it("counts 4xx, 5xx and no response as errors; names subresources and paths", () => {
    expect([200, 201, 404, 500, undefined].map((code) => isError(at(1, "c", "r", code)))).toEqual([false, false, true, true, true]);
    expect(resourceOf({ ...at(1, "c", "pods"), subresource: "log" })).toBe("pods/log");
    expect(resourceOf({ ...at(1, "c", ""), path: "/healthz" })).toBe("/healthz");
  });
});
