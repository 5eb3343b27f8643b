// The stream's connection: opens the WebSocket with the token subprotocols, (re)subscribes on
// every open, reconnects with capped exponential backoff, and tells a refused token apart from
// a server that is away (a browser cannot see the 401 of a refused upgrade, so it asks the
// HTTP API once with the same token).
import { PROTOCOL, streamSubprotocols } from "./auth";
import { parseServerMessage, type ServerMessage, type SubscribeMessage } from "./protocol";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "refused" | "no-token";

/** The part of a browser WebSocket used here (tests hand in a fake). */
export interface SocketLike {
  readonly protocol: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(): void;
}

export type AuthProbe = () => Promise<"accepted" | "refused" | "unknown">;

export interface ConnectionOptions {
  url: string;
  token: string | null;
  /** The subscribe to send on each open (the app resumes from the last row it has). */
  subscription: () => SubscribeMessage;
  onMessage: (message: ServerMessage) => void;
  onState: (state: ConnectionState, retryInMs?: number) => void;
  createSocket?: (url: string, protocols: string[]) => SocketLike;
  probeAuth?: AuthProbe;
  setTimer?: (callback: () => void, ms: number) => unknown;
  random?: () => number;
}

export const BACKOFF_START_MS = 500;
export const BACKOFF_MAX_MS = 30_000;

/** Delay before reconnect attempt `attempt` (0-based): doubling from 0.5 s to 30 s, 50–100 % jitter. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** `ws://host/api/v1/stream` for a page served from `http://host/...` (wss for https). */
export function streamUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/v1/stream`;
}

export class LiveConnection {
  private socket: SocketLike | null = null;
  /** The socket once open (sending before that would throw). */
  private openSocket: SocketLike | null = null;
  private attempt = 0;
  private stopped = false;
  state: ConnectionState = "connecting";

  constructor(private readonly options: ConnectionOptions) {}

  private setState(state: ConnectionState, retryInMs?: number): void {
    this.state = state;
    this.options.onState(state, retryInMs);
  }

  start(): void {
    if (!this.options.token) {
      this.setState("no-token");
      return;
    }
    this.open();
  }

  private open(): void {
    const create =
      this.options.createSocket ?? ((url: string, protocols: string[]) => new WebSocket(url, protocols) as unknown as SocketLike);
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let opened = false;
    const socket = create(this.options.url, streamSubprotocols(this.options.token!));
    this.socket = socket;
    socket.onopen = () => {
      if (socket.protocol && socket.protocol !== PROTOCOL) {
        socket.close(); // a server that speaks another protocol version
        return;
      }
      opened = true;
      this.openSocket = socket;
      socket.send(JSON.stringify(this.options.subscription()));
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const message = parseServerMessage(event.data);
      if (!message) return;
      if (message.type === "hello") {
        this.attempt = 0;
        this.setState("live");
      }
      this.options.onMessage(message);
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.openSocket = null;
      if (this.stopped) return;
      if (!opened && this.options.probeAuth) {
        this.options.probeAuth().then(
          (verdict) => (verdict === "refused" ? this.setState("refused") : this.retry()),
          () => this.retry(),
        );
      } else {
        this.retry();
      }
    };
  }

  private retry(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.options.random);
    this.attempt++;
    this.setState("reconnecting", delay);
    (this.options.setTimer ?? setTimeout)(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  /** Sends a new subscribe now (it replaces the old one); on the next open it is sent anyway. */
  resubscribe(): void {
    this.openSocket?.send(JSON.stringify(this.options.subscription()));
  }

  stop(): void {
    this.stopped = true;
    this.socket?.close();
    this.socket = null;
  }
}

/**
 * Asks `GET /api/v1/requests/0` with the token: 401 means the token is refused; anything else
 * (404, 200) means it was accepted; a network error says nothing.
 */
export function httpAuthProbe(token: string, fetchImpl: typeof fetch = fetch): AuthProbe {
  return async () => {
    try {
      const response = await fetchImpl("/api/v1/requests/0", { headers: { Authorization: `Bearer ${token}` } });
      if (response.status === 401 || response.status === 403) return "refused";
      return "accepted";
    } catch {
      return "unknown";
    }
  };
}
