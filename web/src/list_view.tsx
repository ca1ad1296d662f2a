// One of the page's task lists on screen: the tasks of one mode (the container's "Recent tasks",
// or "On your machine" for tunnel tasks), as the edge lists them. It loads the first page, then
// more with "More"; it loads the list again while any task in it runs, so every running task's
// state and elapsed time show live whichever timeline is open; a click opens a task's timeline.
// A conversation's turns show as one thread (threads.ts): each follow-up indented under the task
// it continues. The list's logic is tasks.ts's and threads.ts's (pure, unit-tested); this file
// is its DOM and its loads.

import { api, errorText } from "./api.js";
import { render, type JSX } from "preact";
import { $ } from "./dom.js";
import type { TaskSummary } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { anyRunning, describeTask, elapsedOf, isFinal, pageQuery, PAGE_SIZE, parentOf, parseTaskPage, TaskList, type Mode, type Seen, type TaskPage } from "./tasks.js";
import { threadRows, type ThreadRow } from "./threads.js";
import { stateName } from "./timeline.js";
import { shortId } from "./titles.js";

/** How deep a follow-up is drawn at most: a long conversation must still fit a phone. */
const MAX_DRAWN_DEPTH = 4;

/** How often a list with a running task in it is loaded again. The edge writes a running task's
 * state and usage to its list as they change, so this is how late the list can be. */
export const POLL_MS = 2000;

/** The ids of a list's elements in index.html. */
export interface ListElements {
  /** The section holding the list (hidden while it has nothing to show, if `hideWhenEmpty`). */
  section: string;
  list: string;
  status: string;
  more: string;
}

export interface ListHooks {
  /** The task whose timeline is open (its entry is marked). */
  currentTaskId(): string | undefined;
  /** The user clicked an entry. */
  open(taskId: string, mode: Mode): void;
  /** The list was drawn anew (e.g. the page's "no tasks" line may change). */
  rendered(): void;
}

export class TaskListView {
  readonly list = new TaskList();
  /** The list's loads run one after the other, so a page of "More" always follows what is shown
   * and a refresh keeps it; a sign-out starts a new epoch, whose list no earlier load touches. */
  private loads: Promise<void> = Promise.resolve();
  private epoch = 0;
  private poll: number | undefined;
  private clock: number | undefined;
  /** Whether the status line says what a load said (the next good load clears it). */
  private loadSaid = false;
  /** Each listed task's place in its thread, as last drawn. */
  private rows = new Map<string, ThreadRow<TaskSummary>>();

  constructor(
    readonly mode: Mode,
    private readonly ids: ListElements,
    /** What the page saw of the tasks it followed, shared by every list (ids are unique). */
    private readonly seen: Map<string, Seen>,
    private readonly hooks: ListHooks,
    /** Whether the section hides while the list is empty (the tunnel's does). */
    private readonly hideWhenEmpty = false,
  ) {
    $(ids.more).addEventListener("click", () => void this.more());
  }

  /** Whether the first page arrived and lists nothing. */
  get empty(): boolean {
    return this.list.loaded && this.list.tasks.length === 0;
  }

  /** Loads the list's first page again, as long as what is shown (after a task started or ended). */
  refresh(): Promise<void> {
    return this.queue(async () => {
      if (!this.list.loaded) this.setStatus("Loading your tasks…", false, true);
      await this.load(this.list.refreshSize(), "", "The task list", (page) => this.list.refresh(page));
    });
  }

  /** "More": the next page, after what is shown. */
  private more(): Promise<void> {
    const more = $<HTMLButtonElement>(this.ids.more);
    more.disabled = true;
    return this.queue(async () => {
      if (this.list.hasMore) await this.load(PAGE_SIZE, this.list.nextPageToken, "More tasks", (page) => this.list.append(page));
    }).finally(() => (more.disabled = false));
  }

  /** Forgets the list (the user signed out): no load on its way touches it any more. */
  clear() {
    this.epoch++;
    window.clearTimeout(this.poll);
    this.poll = undefined;
    this.list.clear();
    this.setStatus("");
    this.render();
  }

  /** Runs `load` after the list's earlier loads; it is skipped if the user signed out meanwhile. */
  private queue(load: () => Promise<void>): Promise<void> {
    const epoch = this.epoch;
    this.loads = this.loads.then(() => (epoch === this.epoch ? load() : undefined)).catch(() => undefined);
    return this.loads;
  }

  private async load(size: number, token: string, what: string, use: (page: TaskPage) => void) {
    const epoch = this.epoch;
    const { ok, body, status } = await api(pageQuery(this.mode, size, token));
    if (epoch !== this.epoch) return;
    this.schedulePoll();
    if (!ok) return this.setStatus(`${what} could not be loaded: ${errorText(body, status)}`, true, true);
    try {
      use(parseTaskPage(body));
    } catch (error) {
      return this.setStatus(`${what} could not be read: ${error}`, true, true);
    }
    // A load clears what a load said, not what the page said about a task (say, why it did not open).
    if (this.loadSaid) this.setStatus("");
    this.render();
    this.schedulePoll();
  }

  /** Loads the list again in a while if a task in it runs (and no load is due already). */
  private schedulePoll() {
    if (this.poll !== undefined || !anyRunning(this.list.tasks, this.seen)) return;
    const epoch = this.epoch;
    this.poll = window.setTimeout(() => {
      this.poll = undefined;
      if (epoch === this.epoch) void this.refresh();
    }, POLL_MS);
  }

  /** Says something about the list (or a task of it) under its title; `byLoad`: a load said it. */
  setStatus(text: string, isError = false, byLoad = false) {
    this.loadSaid = byLoad;
    const status = $(this.ids.status);
    status.textContent = text;
    status.classList.toggle("error", isError);
    this.showSection();
  }

  /** Takes back `text` if the status line still says it (what it was about was overtaken). */
  unsay(text: string) {
    if ($(this.ids.status).textContent === text) this.setStatus("");
  }

  /** A section that hides while empty shows once it lists a task or has something to say. */
  private showSection() {
    if (this.hideWhenEmpty) $(this.ids.section).hidden = this.list.tasks.length === 0 && !$(this.ids.status).textContent;
  }

  /** Draws the whole list: its threads anew, then every entry. */
  render() {
    const rows = threadRows(this.list.tasks);
    this.rows = new Map(rows.map((row) => [row.task.taskId, row]));
    this.draw();
    $<HTMLButtonElement>(this.ids.more).hidden = !this.list.hasMore;
    this.showSection();
    this.hooks.rendered();
  }

  /** Shows the entry of `taskId` anew (its state or cost changed); answers whether it is listed. */
  rerender(taskId: string): boolean {
    if (!this.rows.has(taskId) || !this.list.get(taskId)) return false;
    this.draw();
    this.schedulePoll();
    return true;
  }

  /** Marks the entry of the open task (`hooks.currentTaskId`). */
  markCurrent() {
    this.draw();
  }

  /** Draws the entries as last threaded. Preact keeps each entry's elements by task id, so a
   * redraw (every second while a task runs) changes them in place: a click that spans one still
   * lands on its button, and the keyboard's focus and Tab stop (roving_focus.ts) stay put. */
  private draw() {
    const now = Date.now();
    const current = this.hooks.currentTaskId();
    const entries = [...this.rows.values()].flatMap((row) => {
      const summary = this.list.get(row.task.taskId);
      if (!summary) return [];
      const parentId = parentOf(summary);
      const parentTitle = parentId ? this.titleOf(parentId) : undefined;
      return [<TaskEntry key={row.task.taskId} summary={summary} seen={this.seen.get(row.task.taskId)} row={row} parentTitle={parentTitle} current={current === row.task.taskId} now={now} open={() => this.hooks.open(row.task.taskId, this.mode)} />];
    });
    render(<>{entries}</>, $(this.ids.list));
    window.clearTimeout(this.clock);
    if (anyRunning(this.list.tasks, this.seen)) this.clock = window.setTimeout(() => this.draw(), 1000);
  }

  /** The title of a listed task (its prompt's first line), if listed. */
  titleOf(taskId: string): string | undefined {
    const summary = this.list.get(taskId);
    return summary ? describeTask(summary).title : undefined;
  }
}

interface EntryProps {
  summary: TaskSummary;
  seen: Seen | undefined;
  row: ThreadRow<TaskSummary>;
  /** The title of the task this one follows up, if it is listed. */
  parentTitle: string | undefined;
  current: boolean;
  now: number;
  open(): void;
}

/** One entry: title, state, how long it ran, cost and when it was created; a click opens it. */
function TaskEntry({ summary, seen, row, parentTitle, current, now, open }: EntryProps) {
  const entry = describeTask(summary, seen);
  const parentId = parentOf(summary);
  const running = !entry.ended && entry.createdMs > 0;
  const took = entry.ended ? elapsedOf(entry, now) : "";
  const title = row.unlistedParentId ? `${entry.repository}\nA follow-up of an earlier task (More lists it)` : entry.repository;
  const meta: (JSX.Element | string)[] = [<span class="badge task-state" data-state={entry.state}>{entry.stateLabel}</span>];
  // A running task's time is what matters most after its state; an ended one's comes last.
  if (running) meta.push(" · ", <span class="task-elapsed">{elapsedOf({ createdMs: entry.createdMs, ended: false, endedMs: 0 }, now)}</span>);
  if (entry.cost) meta.push(" · ", <span class="task-cost">{entry.cost}</span>);
  if (entry.created) meta.push(" · ", <time class="task-created" dateTime={new Date(entry.createdMs).toISOString()}>{entry.created}</time>);
  if (took) meta.push(" · ", <span class="task-took">took {took}</span>);
  return (
    <li class="task" data-task-id={entry.taskId} data-state={entry.state} data-parent-id={parentId || undefined} data-depth={String(row.depth)} aria-current={current ? "true" : undefined} style={{ "--depth": String(Math.min(row.depth, MAX_DRAWN_DEPTH)) }}>
      {/* A follow-up: marked as one, and said so to a screen reader. */}
      {parentId && <span class="task-follow-up" aria-hidden="true">↳ </span>}
      <button type="button" class="link task-title" title={title} aria-label={parentId ? `${entry.title} (follow-up of ${parentTitle ?? "an earlier task"})` : undefined} onClick={open}>
        {entry.title}
      </button>
      <div class="task-meta">{meta}</div>
      <div class="task-where">
        <span class="task-repository">{repositoryName(summary.repositoryUrl)}</span> · <code class="task-short-id">{shortId(entry.taskId)}</code>
      </div>
    </li>
  );
}

/** A repository's short name in the list: its last path segment, without ".git". */
export const repositoryName = (url: string): string => url.replace(/\/+$/, "").split(/[/:]/).pop()?.replace(/\.git$/, "") || url;

/** Whether the list's own entry of a task says it ended (the edge archived its end). */
export const listedAsEnded = (view: TaskListView, taskId: string): boolean | undefined => {
  const listed = view.list.get(taskId);
  return listed ? isFinal(stateName(listed.state)) : undefined;
};
