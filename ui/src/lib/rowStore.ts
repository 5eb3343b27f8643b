// Rows kept in the browser: at most `capacity`, the oldest dropped first and counted.
import type { Row } from "./protocol";

export class RowStore {
  readonly rows: Row[] = [];
  /** Rows dropped from the front to stay within capacity, since the last clear. */
  evicted = 0;

  constructor(readonly capacity: number) {}

  /** Appends rows; answers how many old rows were evicted to make room. */
  append(batch: readonly Row[]): number {
    for (const row of batch) this.rows.push(row);
    const excess = this.rows.length - this.capacity;
    if (excess <= 0) return 0;
    this.rows.splice(0, excess);
    this.evicted += excess;
    return excess;
  }

  clear(): void {
    this.rows.length = 0;
    this.evicted = 0;
  }

  get last(): Row | undefined {
    return this.rows[this.rows.length - 1];
  }
}
