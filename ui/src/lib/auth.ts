// The bearer token: read once from the URL fragment (which never reaches a server or its logs),
// kept in sessionStorage, and offered to the WebSocket as a subprotocol (docs/live-view.md).

export const PROTOCOL = "apiscope.v1";
const BEARER_PREFIX = "base64url.bearer.apiscope.";
const STORAGE_KEY = "apiscope.token";

/** base64url of the token's UTF-8 bytes, without padding. */
export function base64UrlUnpadded(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function streamSubprotocols(token: string): string[] {
  return [PROTOCOL, BEARER_PREFIX + base64UrlUnpadded(token)];
}

/** The fragment's `token=` value, if any (`#token=abc&x=y`). */
export function tokenFromFragment(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const token = params.get("token");
  return token ? token : null;
}

interface TokenSources {
  location: { hash: string; pathname: string; search: string };
  history: { replaceState(data: unknown, unused: string, url?: string): void };
  storage: Pick<Storage, "getItem" | "setItem">;
}

/**
 * Moves a fragment token into storage and out of the address bar (so it is neither bookmarked
 * nor shown on screen), then answers the stored token.
 */
export function takeToken({ location, history, storage }: TokenSources): string | null {
  const fromFragment = tokenFromFragment(location.hash);
  if (fromFragment !== null) {
    storage.setItem(STORAGE_KEY, fromFragment);
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  return storage.getItem(STORAGE_KEY);
}
