import { describe, expect, it } from "vitest";
import { FollowState } from "./followState";

describe("pause on scroll", () => {
  it("pauses when the user scrolls up, counts new rows, resumes at the bottom", () => {
    const follow = new FollowState();
    follow.onScroll(1000, 1000);
    expect(follow.following).toBe(true);
    follow.onRowsAppended(50);
    expect(follow.unseen).toBe(0);

    follow.onScroll(900, 1000); // wheel up
    expect(follow.following).toBe(false);
    follow.onRowsAppended(30);
    follow.onRowsAppended(12);
    expect(follow.unseen).toBe(42);

    follow.onScroll(950, 1100); // down, not yet at the bottom: still paused
    expect(follow.following).toBe(false);
    follow.onScroll(1098, 1100); // within the slack of the bottom
    expect(follow).toMatchObject({ following: true, unseen: 0 });
  });

  it("is not paused by the table's own scrolling", () => {
    const follow = new FollowState();
    follow.onScroll(500, 500);
    follow.onScroll(300, 800, false); // a resize or eviction moved it, not the user
    expect(follow.following).toBe(true);
    follow.noteProgrammaticScroll(800);
    follow.onScroll(800, 800);
    expect(follow.following).toBe(true);
  });

  it("resumes on request (the badge)", () => {
    const follow = new FollowState();
    follow.onScroll(100, 100);
    follow.onScroll(10, 100);
    follow.onRowsAppended(7);
    follow.resume();
    expect(follow).toMatchObject({ following: true, unseen: 0 });
  });
});
