// Incoming rows are queued and applied once per animation frame, so a burst of thousands of
// messages costs one render, not thousands. The queue is bounded: past `maxPending` the oldest
// queued rows are dropped and counted (a tab in the background gets no animation frames).
import type { Row } from "./protocol";

export type FrameScheduler = (callback: () => void) => void;

export const animationFrameScheduler: FrameScheduler = (callback) => {
  requestAnimationFrame(() => callback());
};

export class FrameBatcher {
  private pending: Row[] = [];
  private scheduled = false;
  /** Rows dropped because the queue was full before a frame came. */
  droppedPending = 0;

  constructor(
    private readonly apply: (rows: Row[]) => void,
    private readonly maxPending: number,
    private readonly schedule: FrameScheduler = animationFrameScheduler,
  ) {}

  push(rows: readonly Row[]): void {
    for (const row of rows) this.pending.push(row);
    const excess = this.pending.length - this.maxPending;
    if (excess > 0) {
      this.pending.splice(0, excess);
      this.droppedPending += excess;
    }
    if (!this.scheduled && this.pending.length > 0) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
  }

  /** Applies everything queued (also called directly when the queue must be emptied now). */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.apply(batch);
  }

  /** Forgets queued rows (a new subscription replaces the stream). */
  discard(): void {
    this.pending = [];
  }

  get pendingCount(): number {
    return this.pending.length;
  }
}
