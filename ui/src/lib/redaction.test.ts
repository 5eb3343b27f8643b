import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { REDACTION_MARKER, countRedactions, splitRedactions } from "./redaction";

describe("redaction markers", () => {
  it("is the marker the capture policy writes", () => {
    const source = readFileSync(new URL("../../../exporter/src/policy/redact.rs", import.meta.url), "utf8");
    expect(source).toContain(`pub const REDACTED: &str = "${REDACTION_MARKER}";`);
  });

  it("splits text into plain runs and markers", () => {
    const text = '{"password":"[REDACTED]","token":"[REDACTED]"}';
    const segments = splitRedactions(text);
    expect(segments.map((s) => s.text).join("")).toBe(text);
    expect(segments.filter((s) => s.redacted)).toHaveLength(2);
    expect(segments[0]).toEqual({ text: '{"password":"', redacted: false });
    expect(countRedactions("[REDACTED][REDACTED]")).toBe(2);
    expect(splitRedactions("")).toEqual([]);
    expect(splitRedactions("[REDACTED")).toEqual([{ text: "[REDACTED", redacted: false }]);
  });
});
