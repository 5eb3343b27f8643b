// Redaction markers: what the capture policy put in place of a withheld value
// (REDACTED in exporter/src/policy/redact.rs), shown as such rather than as data.

export const REDACTION_MARKER = "[REDACTED]";

export interface TextSegment {
  text: string;
  redacted: boolean;
}

/** Splits text into plain runs and markers, in order; concatenated they give the text back. */
export function splitRedactions(text: string, marker = REDACTION_MARKER): TextSegment[] {
  const segments: TextSegment[] = [];
  let from = 0;
  for (;;) {
    const at = text.indexOf(marker, from);
    if (at < 0) break;
    if (at > from) segments.push({ text: text.slice(from, at), redacted: false });
    segments.push({ text: marker, redacted: true });
    from = at + marker.length;
  }
  if (from < text.length) segments.push({ text: text.slice(from), redacted: false });
  return segments;
}

export function countRedactions(text: string, marker = REDACTION_MARKER): number {
  return splitRedactions(text, marker).filter((s) => s.redacted).length;
}
