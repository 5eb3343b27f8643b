// The live view's state, apart from any rendering: server messages in, rows batched per
// animation frame into a bounded store, the follow/pause state, the client map, and the notices
// the status bar shows.
import { ClientMap } from "./clientMap";
import { FollowState } from "./followState";
import { FrameBatcher, type FrameScheduler, animationFrameScheduler } from "./frameBatcher";
import { subscribeMessage, type Row, type ServerMessage, type SubscribeMessage } from "./protocol";
import { RowStore } from "./rowStore";

export const DEFAULT_CAPACITY = 50_000;
export const HISTORY_LIMIT = 500;

export interface FilterError {
  message: string;
  column?: number;
}

export interface LiveViewOptions {
  capacity?: number;
  scheduler?: FrameScheduler;
  mapWindowSeconds?: number;
  /** Called after each applied batch, with the rows appended and evicted. */
  onApplied?: (appended: number, evicted: number) => void;
}

export class LiveView {
  readonly store: RowStore;
  readonly follow = new FollowState();
  readonly clientMap: ClientMap;
  readonly batcher: FrameBatcher;
  filter = "";
  filterError: FilterError | null = null;
  /** Rows the server said it skipped (slow client), since the page loaded. */
  serverDropped = 0;
  droppedNotices = 0;
  historyDone = false;
  received = 0;
  hello: Extract<ServerMessage, { type: "hello" }> | null = null;
  private reconnecting = false;

  constructor(private readonly options: LiveViewOptions = {}) {
    this.store = new RowStore(options.capacity ?? DEFAULT_CAPACITY);
    this.clientMap = new ClientMap(options.mapWindowSeconds ?? 60);
    // The queue holds at most one store's worth: more would be evicted on arrival anyway.
    this.batcher = new FrameBatcher((rows) => this.apply(rows), this.store.capacity, options.scheduler ?? animationFrameScheduler);
  }

  private apply(rows: Row[]): void {
    const evicted = this.store.append(rows);
    this.follow.onRowsAppended(rows.length);
    this.options.onApplied?.(rows.length, evicted);
  }

  handle(message: ServerMessage): void {
    switch (message.type) {
      case "hello":
        this.hello = message;
        break;
      case "requests":
        this.received += message.items.length;
        // The map counts on arrival: rows the browser later drops for space still count.
        for (const row of message.items) this.clientMap.add(row.request);
        this.batcher.push(message.items);
        break;
      case "history_end":
        this.historyDone = true;
        break;
      case "dropped":
        this.serverDropped += message.count;
        this.droppedNotices++;
        break;
      case "error":
        this.filterError = { message: message.message, column: message.column };
        break;
    }
  }

  /** The subscribe for the next open: a fresh one, or after a reconnect, from the last row kept. */
  subscription(): SubscribeMessage {
    this.batcher.flush();
    const last = this.store.last;
    if (this.reconnecting && last) return subscribeMessage(this.filter, HISTORY_LIMIT, last.request.end_unix_nano + 1);
    this.reconnecting = true;
    return subscribeMessage(this.filter, HISTORY_LIMIT, null);
  }

  /** A new filter: the table starts over with that filter's history. */
  setFilter(filter: string): void {
    this.filter = filter;
    this.filterError = null;
    this.historyDone = false;
    this.reconnecting = false;
    this.batcher.discard();
    this.store.clear();
    this.clientMap.clear();
    this.follow.resume();
  }

  /** Browser-side drops: evicted for capacity, and dropped from the queue before a frame came. */
  get browserDropped(): number {
    return this.store.evicted + this.batcher.droppedPending;
  }
}
