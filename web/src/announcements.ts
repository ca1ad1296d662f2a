// What the page says to a screen reader as a task goes on: new steps are announced politely (an
// ARIA live region, never the timeline itself, which may hold thousands of entries), in short
// words, at most one announcement per moment: what came within `COALESCE_MS` is said together.
// A replay of an ended task is not read out step by step: only how it ended. The words are pure
// (`announcementFor`, unit-tested); `Announcer` owns the live region.

import type { Entry } from "./timeline.js";

/** How long steps are gathered before they are announced together. */
export const COALESCE_MS = 1500;

const ENDINGS: Record<string, string> = {
  SUCCEEDED: "The task finished",
  FAILED: "The task failed",
  CANCELLED: "The task was cancelled",
  TIMED_OUT: "The task timed out",
};

/** The words for a new entry, or "" for one not worth interrupting the user for. */
export function announcementFor(entry: Entry): string {
  switch (entry.kind) {
    case "state":
      return entry.state === "RUNNING" ? "The agent is working" : entry.state === "CLONING" ? "Cloning the repository" : "";
    case "tool":
      return `${entry.name}: ${entry.summary}`;
    case "text":
      return "The agent wrote a message";
    case "diff":
      return entry.filesChanged === 0 ? "No files changed" : `${entry.filesChanged} files changed`;
    case "delivered":
      return entry.step === "committed" ? `Committed on branch ${entry.branch}` : `Pushed branch ${entry.branch}`;
    case "finished":
      return ENDINGS[entry.state] ?? `The task ended: ${entry.state}`;
    default:
      return "";
  }
}

/** Says what `announce` gets in the live region `region`, gathered per [`COALESCE_MS`]. */
export class Announcer {
  private queued: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly region: HTMLElement) {}

  announce(words: string) {
    if (!words) return;
    this.queued.push(words);
    this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  /** Says `words` at once, dropping what was gathered (the user moved to another task). */
  now(words: string) {
    this.reset();
    this.region.textContent = words;
  }

  /** Drops what was gathered and not said yet. */
  reset() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queued = [];
  }

  private flush() {
    this.timer = undefined;
    const said = this.queued.length > 3 ? [...this.queued.slice(0, 2), `and ${this.queued.length - 2} more steps`] : this.queued;
    this.queued = [];
    this.region.textContent = said.join(". ");
  }
}
