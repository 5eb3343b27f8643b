// Raw body bytes in five views. The server sends the policy-rendered bytes as base64.

export type BytesView = "hex" | "base64" | "binary" | "ascii" | "utf8";
export const BYTES_VIEWS: BytesView[] = ["hex", "base64", "binary", "ascii", "utf8"];

/** Decodes standard base64 (padding optional); `null` for anything that is not base64. */
export function decodeBase64(text: string): Uint8Array | null {
  const clean = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 === 1) return null;
  let binary: string;
  try {
    binary = atob(clean);
  } catch {
    return null;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

const isPrintable = (byte: number) => byte >= 0x20 && byte < 0x7f;
const offset = (n: number) => n.toString(16).padStart(8, "0");

/** `00000000  7b 22 61 22 ...  |{"a"...|`, 16 bytes a line. */
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let start = 0; start < bytes.length; start += 16) {
    const chunk = bytes.subarray(start, start + 16);
    let hex = "";
    let ascii = "";
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += " ";
      hex += i < chunk.length ? chunk[i].toString(16).padStart(2, "0") + " " : "   ";
      if (i < chunk.length) ascii += isPrintable(chunk[i]) ? String.fromCharCode(chunk[i]) : ".";
    }
    lines.push(`${offset(start)}  ${hex} |${ascii}|`);
  }
  return lines.join("\n");
}

/** Eight bytes a line, each as eight bits. */
export function binaryDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let start = 0; start < bytes.length; start += 8) {
    const bits = Array.from(bytes.subarray(start, start + 8), (b) => b.toString(2).padStart(8, "0"));
    lines.push(`${offset(start)}  ${bits.join(" ")}`);
  }
  return lines.join("\n");
}

/** Printable ASCII as is, line breaks kept, everything else as `.`. */
export function asciiView(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += isPrintable(byte) || byte === 0x0a ? String.fromCharCode(byte) : ".";
  return out;
}

/** UTF-8, invalid sequences shown as U+FFFD. */
export function utf8View(bytes: Uint8Array): string {
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}

/** Views are cut to this many bytes: a browser stays responsive on a large body. */
export const MAX_VIEW_BYTES = 256 * 1024;

export function renderBytes(bytes: Uint8Array, view: BytesView): string {
  const shown = bytes.subarray(0, MAX_VIEW_BYTES);
  switch (view) {
    case "hex":
      return hexDump(shown);
    case "base64":
      return encodeBase64(shown);
    case "binary":
      return binaryDump(shown);
    case "ascii":
      return asciiView(shown);
    case "utf8":
      return utf8View(shown);
  }
}
