// The open task as a conversation (Preact): the agent's messages (markdown), each tool call one
// line that expands to its input and output, the steps of the run as quiet lines, the diff viewer
// with the delivery beside it, and how the task ended. The user's turn (the prompt) sits above it
// (main.ts). The folding of events into entries is timeline.ts's; this file only draws them.
//
// A replay can bring thousands of events in a second: they are applied to the Timeline as they
// come, and the view is drawn at most once per animation frame; each entry is a component that
// redraws only when its entry object changed (timeline.ts replaces a changed entry), so a frame
// costs the new entries, not the whole timeline.
//
// Why Preact: the page's views that grew (a conversation of many kinds of entries, the diff
// viewer with its per-file state) read better as components than as hand-written DOM code, and
// Preact gives the React model (components, keyed lists, hooks) in about 4 KB gzipped, compiled
// from JSX by the esbuild the page already uses, with no framework runtime or build plugin. Lit
// would do as well but brings custom elements and shadow DOM, which the page (one stylesheet,
// axe-checked) does not want.

import { Component, render } from "preact";
import { useState } from "preact/hooks";
import { DiffView, type DeliveredTo } from "./diff_view.js";
import { renderMarkdown } from "./markdown.js";
import type { Entry, SetupEntry, Timeline } from "./timeline.js";

/** The timeline's words for each state. */
export const STATE_LABELS: Record<string, string> = {
  PENDING: "Starting",
  CLONING: "Cloning the repository",
  SETTING_UP: "Setting up the environment",
  RUNNING: "The agent is working",
  SUCCEEDED: "Finished",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
};

/** Past this many entries, off-screen entries skip layout (CSS content-visibility). */
const LONG_TIMELINE = 400;

interface EntryProps {
  entry: Entry;
  /** The diff's delivery (commit and branch), drawn beside it. */
  delivered?: DeliveredTo;
  /** The agent's last message: the final entry leaves out a result that repeats it. */
  lastText?: string;
}

class EntryItem extends Component<EntryProps> {
  shouldComponentUpdate(next: EntryProps) {
    const now = this.props;
    return next.entry !== now.entry || next.lastText !== now.lastText || next.delivered?.commit !== now.delivered?.commit || next.delivered?.pushedTo !== now.delivered?.pushedTo;
  }

  render({ entry, delivered, lastText }: EntryProps) {
    const classes = `entry ${entry.kind}${entry.kind === "tool" && entry.isError ? " is-error" : ""}${entry.kind === "finished" ? ` final-${entry.state.toLowerCase()}` : ""}`;
    return (
      <li class={classes} data-seq={entry.seq} data-tool-id={entry.kind === "tool" ? entry.toolId : undefined}>
        {body(entry, delivered, lastText)}
      </li>
    );
  }
}

function body(entry: Entry, delivered?: DeliveredTo, lastText?: string) {
  switch (entry.kind) {
    case "state":
      return (
        <>
          <span class="label">{STATE_LABELS[entry.state] ?? entry.state}</span>
          {entry.reason && <span class="reason"> — {entry.reason}</span>}
        </>
      );
    case "git":
      return <span class="label">git: {entry.message}</span>;
    case "ready":
      return <span class="label">Checked out {entry.commit.slice(0, 12)}</span>;
    case "agent":
      return <span class="label">Agent started ({entry.model})</span>;
    case "text":
      // markdown-it with raw HTML disabled and only safe link schemes (markdown.ts).
      return <div class="markdown" dangerouslySetInnerHTML={{ __html: markdownHtml(entry.text) }} />;
    case "tool":
      return <ToolCall entry={entry} />;
    case "diff":
      return <DiffView entry={entry} delivered={delivered} />;
    case "delivered":
      return (
        <>
          <span class="label">{entry.step === "committed" ? `Committed ${entry.commit.slice(0, 12)} on branch ` : "Pushed branch "}</span>
          <code class="branch">{entry.branch}</code>
          <span class="label">{entry.step === "pushed" ? ` to ${entry.remoteUrl}` : ""}</span>
        </>
      );
    case "setup":
      return <SetupRun entry={entry} />;
    case "finished": {
      const repeated = lastText !== undefined && lastText.trim() === entry.result.trim();
      return (
        <>
          <strong class="label">{`${STATE_LABELS[entry.state] ?? entry.state} in ${(entry.durationMs / 1000).toFixed(1)} s, ${entry.turns} turns`}</strong>
          {entry.error && <p class="error">{entry.error}</p>}
          {entry.result && !repeated && <div class="markdown result" dangerouslySetInnerHTML={{ __html: markdownHtml(entry.result) }} />}
        </>
      );
    }
  }
}

/** The environment's script: which one ran and on what, its output as it comes, how it ended. */
function SetupRun({ entry }: { entry: SetupEntry }) {
  const script = entry.maintenance ? "Maintenance script" : "Setup script";
  const on = entry.origin === "fresh" ? "a fresh clone" : entry.origin === "prepared" ? "the prepared workspace" : "the restored workspace";
  const ended = entry.ended;
  const outcome = !ended
    ? "running…"
    : ended.timedOut
      ? `killed at its time limit after ${(ended.durationMs / 1000).toFixed(1)} s`
      : `exited ${ended.exitCode} after ${(ended.durationMs / 1000).toFixed(1)} s`;
  return (
    <details open={!ended || ended.exitCode !== 0}>
      <summary>
        <span class="tool-name">{`${script} of ${entry.environment}`}</span> <span class="label">{`on ${on}: `}</span>
        <span class={ended && ended.exitCode !== 0 ? "setup-outcome error" : "setup-outcome"}>{outcome}</span>
      </summary>
      <pre class="setup-output" tabIndex={0}>
        {entry.linesDropped > 0 ? `[${entry.linesDropped} earlier lines]\n` : ""}
        {entry.lines.join("\n")}
      </pre>
    </details>
  );
}

/** A tool call: one line (its name and what it was given, in short) that opens to its whole input
 * and its output. What it opens to is made only once opened: a replay holds thousands of calls. */
function ToolCall({ entry }: { entry: Entry & { kind: "tool" } }) {
  const [open, setOpen] = useState(false);
  return (
    <details onToggle={(event) => setOpen((event.currentTarget as HTMLDetailsElement).open)}>
      <summary>
        <span class="tool-name">{entry.name}</span>
        <code class="tool-input">{entry.summary}</code>
      </summary>
      {open && (
        <div class="tool-io">
          <p class="tool-io-label">Input</p>
          <pre class="tool-input-full" tabIndex={0}>{prettyJson(entry.inputJson)}</pre>
          <p class="tool-io-label">Output</p>
          <pre class="tool-output" tabIndex={0}>{entry.output ?? "(running…)"}</pre>
        </div>
      )}
    </details>
  );
}

/** Agent markdown as HTML (markdown.ts: raw HTML disabled); its code blocks, which scroll
 * sideways when a line is long, are reachable by the keyboard, as a scrollable region must be. */
const markdownHtml = (text: string): string => renderMarkdown(text).replaceAll("<pre>", '<pre tabindex="0">');

/** A tool's input as sent: JSON laid out for reading when it is JSON. */
function prettyJson(inputJson: string): string {
  try {
    return JSON.stringify(JSON.parse(inputJson), null, 2);
  } catch {
    return inputJson;
  }
}

/** Where the task's changes went, from its delivery entries. */
function deliveredTo(entries: Entry[]): DeliveredTo | undefined {
  let delivered: DeliveredTo | undefined;
  for (const entry of entries) {
    if (entry.kind !== "delivered") continue;
    delivered = { branch: entry.branch, commit: entry.commit || delivered?.commit || "", pushedTo: entry.step === "pushed" ? entry.remoteUrl : delivered?.pushedTo ?? "" };
  }
  return delivered;
}

function Entries({ timeline }: { timeline: Timeline }) {
  const entries = timeline.entries;
  const delivered = entries.some((e) => e.kind === "diff") ? deliveredTo(entries) : undefined;
  let lastText: string | undefined;
  for (let i = entries.length - 1; i >= 0 && lastText === undefined; i--) {
    const entry = entries[i];
    if (entry.kind === "text") lastText = entry.text;
  }
  return (
    <>
      {entries.map((entry) => (
        <EntryItem key={entry.seq} entry={entry} delivered={entry.kind === "diff" ? delivered : undefined} lastText={entry.kind === "finished" ? lastText : undefined} />
      ))}
    </>
  );
}

/** How much of the time a burst of events (a replay) may spend drawing: after a draw that took
 * `t` ms, the next waits `t × (1 / DRAW_SHARE − 1)` ms, so applying the events keeps the rest. */
const DRAW_SHARE = 0.25;
/** The longest a burst postpones its next draw. */
const MAX_DRAW_GAP_MS = 300;

/** The conversation drawn into the list `list`, redrawn at most once per frame, and less often
 * while a burst of events costs frames. */
export class ConversationView {
  private timeline: Timeline | undefined;
  private drawn = -1;
  private scheduled = false;
  /** When the last draw ended, and how long it took. */
  private lastDrawEnd = 0;
  private lastDrawMs = 0;

  /** `drawnHook` runs after each draw, with how long it took (the page measures from it). */
  constructor(
    private readonly list: HTMLElement,
    private readonly drawnHook: (timeline: Timeline, tookMs: number) => void = () => {},
  ) {}

  /** Shows `timeline` (a new one empties the list), drawn on the next frame. */
  show(timeline: Timeline) {
    if (timeline !== this.timeline) {
      this.timeline = timeline;
      this.drawn = -1;
      render(null, this.list);
    }
    this.schedule();
  }

  /** The timeline changed: it is drawn on the next frame (once, however many events came). */
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    // A frame, or a moment when frames do not come (a hidden tab): whichever is first; during a
    // burst, not before the pause the last draw's cost asks for.
    const gap = Math.min(this.lastDrawMs * (1 / DRAW_SHARE - 1), MAX_DRAW_GAP_MS);
    const wait = Math.max(0, this.lastDrawEnd + gap - performance.now());
    const draw = () => this.draw();
    const onFrame = () => requestAnimationFrame(draw);
    if (wait > 0) setTimeout(onFrame, wait);
    else onFrame();
    setTimeout(draw, wait + 250);
  }

  /** Whether everything shown so far is drawn (no draw is due). */
  get idle(): boolean {
    return !this.scheduled && this.timeline?.version === this.drawn;
  }

  /** Draws what changed since the last draw, now. */
  draw() {
    if (!this.scheduled) return;
    this.scheduled = false;
    const timeline = this.timeline;
    if (!timeline || timeline.version === this.drawn) return;
    this.drawn = timeline.version;
    const began = performance.now();
    this.list.classList.toggle("long", timeline.entries.length > LONG_TIMELINE);
    render(<Entries timeline={timeline} />, this.list);
    this.lastDrawEnd = performance.now();
    this.lastDrawMs = this.lastDrawEnd - began;
    this.drawnHook(timeline, this.lastDrawMs);
  }
}
