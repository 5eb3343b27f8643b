import { describe, expect, it } from "vitest";
import { base64UrlUnpadded, streamSubprotocols, takeToken, tokenFromFragment } from "./auth";

describe("auth", () => {
  it("encodes the token as unpadded base64url of its UTF-8 bytes", () => {
    expect(base64UrlUnpadded("a")).toBe("YQ"); // "YQ==" padded
    expect(base64UrlUnpadded("ab?>")).toBe("YWI_Pg"); // '/' -> '_'
    expect(base64UrlUnpadded("\u00fb\u00ff")).toBe("w7vDvw"); // UTF-8, '+' never appears
    expect(base64UrlUnpadded("~~~")).toBe("fn5-"); // '+' -> '-'
    expect(Buffer.from(base64UrlUnpadded("s3cr3t-tøken"), "base64url").toString()).toBe("s3cr3t-tøken");
  });

  it("offers the protocol and the bearer subprotocol", () => {
    expect(streamSubprotocols("abc")).toEqual(["apiscope.v1", "base64url.bearer.apiscope.YWJj"]);
    // Every character is valid in a Sec-WebSocket-Protocol token.
    expect(streamSubprotocols("x/y+z==")[1]).toMatch(/^[A-Za-z0-9._-]+$/);
  });

  it("reads the token from the fragment only", () => {
    expect(tokenFromFragment("#token=abc")).toBe("abc");
    expect(tokenFromFragment("#x=1&token=a%2Bb")).toBe("a+b");
    expect(tokenFromFragment("#token=")).toBeNull();
    expect(tokenFromFragment("")).toBeNull();
  });

  it("moves the fragment token into storage and out of the address bar", () => {
    const stored = new Map<string, string>();
    const storage = { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => void stored.set(k, v) };
    const replaced: string[] = [];
    const history = { replaceState: (_d: unknown, _u: string, url?: string) => void replaced.push(url ?? "") };
    const token = takeToken({ location: { hash: "#token=t0k&keep=1", pathname: "/", search: "?filter=x" }, history, storage });
    expect(token).toBe("t0k");
    expect(replaced).toEqual(["/?filter=x#keep=1"]);
    // A reload (no fragment any more) finds it in sessionStorage.
    expect(takeToken({ location: { hash: "", pathname: "/", search: "" }, history, storage })).toBe("t0k");
    expect(replaced).toHaveLength(1);
  });
});
