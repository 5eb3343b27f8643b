// Pause on scroll, as packet viewers do: scrolling up stops following the live feed and counts
// the rows that arrive meanwhile; reaching the bottom again (or "resume") follows again.
// Only an upward scroll the user made pauses: the table's own scrolling (to the bottom, or after
// a resize) does not.

export class FollowState {
  following = true;
  /** Rows appended since the feed was paused. */
  unseen = 0;
  private lastScrollTop = 0;

  /** `slack`: how close to the bottom (pixels) counts as at the bottom. */
  constructor(private readonly slack = 4) {}

  /** `byUser`: a wheel, key, touch or scrollbar drag came just before this scroll. */
  onScroll(scrollTop: number, maxScrollTop: number, byUser = true): void {
    if (scrollTop >= maxScrollTop - this.slack) this.resume();
    else if (byUser && scrollTop < this.lastScrollTop) this.pause();
    this.lastScrollTop = scrollTop;
  }

  onRowsAppended(count: number): void {
    if (!this.following) this.unseen += count;
  }

  pause(): void {
    this.following = false;
  }

  resume(): void {
    this.following = true;
    this.unseen = 0;
  }

  /** The table moved its scroll position itself (follow, or rows evicted above the view). */
  noteProgrammaticScroll(scrollTop: number): void {
    this.lastScrollTop = scrollTop;
  }
}
