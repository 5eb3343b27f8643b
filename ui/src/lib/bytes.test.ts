import { describe, expect, it } from "vitest";
import { MAX_VIEW_BYTES, asciiView, binaryDump, decodeBase64, encodeBase64, hexDump, renderBytes, utf8View } from "./bytes";

const bytes = (...values: number[]) => new Uint8Array(values);

describe("byte views", () => {
  it("hex dump: offset, 16 bytes a line split in two halves, printable ASCII", () => {
    const text = new TextEncoder().encode('{"kind":"Secret"}\n');
    expect(hexDump(text).split("\n")).toEqual([
      '00000000  7b 22 6b 69 6e 64 22 3a  22 53 65 63 72 65 74 22  |{"kind":"Secret"|',
      "00000010  7d 0a                                             |}.|",
    ]);
    expect(hexDump(bytes())).toBe("");
  });

  it("binary: eight bits a byte, eight bytes a line", () => {
    expect(binaryDump(bytes(0, 1, 255, 0x80, 5, 6, 7, 8, 9))).toBe(
      "00000000  00000000 00000001 11111111 10000000 00000101 00000110 00000111 00001000\n00000008  00001001",
    );
  });

  it("ASCII keeps printable bytes and line breaks, dots for the rest", () => {
    expect(asciiView(bytes(0x41, 0x00, 0x0a, 0x7f, 0xe2, 0x7e))).toBe("A.\n..~");
  });

  it("UTF-8 decodes multi-byte characters and marks invalid sequences", () => {
    expect(utf8View(new TextEncoder().encode("grüße ✓"))).toBe("grüße ✓");
    expect(utf8View(bytes(0x61, 0xff, 0x62))).toBe("a\ufffdb");
  });

  it("base64 both ways, rejecting what is not base64", () => {
    const data = bytes(0, 1, 2, 250, 251, 252, 253, 254, 255);
    expect(decodeBase64(encodeBase64(data))).toEqual(data);
    expect(encodeBase64(new TextEncoder().encode("hi"))).toBe("aGk=");
    expect(decodeBase64("aGk")).toEqual(new TextEncoder().encode("hi"));
    expect(decodeBase64("not base64!")).toBeNull();
    expect(decodeBase64("a")).toBeNull();
    expect(decodeBase64("")).toEqual(bytes());
  });

  it("caps what a view renders", () => {
    const big = new Uint8Array(MAX_VIEW_BYTES + 100).fill(0x41);
    expect(renderBytes(big, "ascii")).toHaveLength(MAX_VIEW_BYTES);
    expect(renderBytes(bytes(0x41), "base64")).toBe("QQ==");
  });
});
