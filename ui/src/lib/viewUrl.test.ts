import { describe, expect, it } from "vitest";
import { readViewParams, withFilter } from "./viewUrl";

describe("filter in the URL", () => {
  it("round-trips any filter text", () => {
    for (const filter of ['verb == "watch" and resource == "pods"', 'namespace =~ "kube-.*"', "code >= 500 & ?x=#y", "ünïcode"]) {
      const path = withFilter("http://host:1/?jaeger=http%3A%2F%2Fj%3A16686", filter);
      const url = new URL(path, "http://host:1");
      expect(readViewParams(url.search)).toEqual({ filter, jaeger: "http://j:16686" });
    }
  });

  it("removes an empty filter and keeps the rest", () => {
    expect(withFilter("http://h/?filter=a&jaeger=j#frag", "")).toBe("/?jaeger=j#frag");
    expect(readViewParams("")).toEqual({ filter: "", jaeger: null });
  });
});
