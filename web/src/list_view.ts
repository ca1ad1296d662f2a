// One of the page's task lists on screen: the tasks of one mode (the container's "Recent tasks",
// or "On your machine" for tunnel tasks), as the edge lists them. It loads the first page, then
// more with "More"; it loads the list again while any task in it runs, so every running task's
// state and elapsed time show live whichever timeline is open; a click opens a task's timeline.
// A conversation's turns show as one thread (threads.ts): each follow-up indented under the task
// it continues. The list's logic is tasks.ts's and threads.ts's (pure, unit-tested); this file
// is its DOM and its loads.

import { api, errorText } from "./api.js";
import { $, element } from "./dom.js";
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

  /** Draws the whole list anew. */
  render() {
    const list = $(this.ids.list);
    // The entries are made anew: keep the keyboard's place on the one it was on.
    const focused = document.activeElement?.closest<HTMLElement>(`#${this.ids.list} li`)?.dataset.taskId;
    const rows = threadRows(this.list.tasks);
    this.rows = new Map(rows.map((row) => [row.task.taskId, row]));
    list.replaceChildren(...rows.map((row) => this.renderTask(row.task.taskId)!));
    if (focused) list.querySelector<HTMLElement>(`li[data-task-id="${CSS.escape(focused)}"] button`)?.focus();
    $<HTMLButtonElement>(this.ids.more).hidden = !this.list.hasMore;
    this.showSection();
    this.tickElapsed();
    this.hooks.rendered();
  }

  /** Shows the entry of `taskId` anew (its state or cost changed); answers whether it is listed. */
  rerender(taskId: string): boolean {
    const old = document.querySelector(`#${this.ids.list} li[data-task-id="${CSS.escape(taskId)}"]`);
    const fresh = this.renderTask(taskId);
    if (!old || !fresh) return false;
    const hadFocus = old.contains(document.activeElement);
    // The keyboard's one stop in the lists (roving_focus.ts) stays where it was.
    const [was, now] = [old.querySelector("button"), fresh.querySelector("button")];
    if (was && now) now.tabIndex = was.tabIndex;
    old.replaceWith(fresh);
    if (hadFocus) fresh.querySelector("button")?.focus();
    this.tickElapsed();
    this.schedulePoll();
    return true;
  }

  /** Marks the entry of the open task. */
  markCurrent(taskId: string | undefined) {
    for (const item of document.querySelectorAll<HTMLElement>(`#${this.ids.list} li`)) {
      if (item.dataset.taskId === taskId) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
    }
  }

  /** One entry: title, state, how long it ran, cost and when it was created; a click opens it. */
  private renderTask(taskId: string): HTMLElement | undefined {
    const summary = this.list.get(taskId);
    if (!summary) return undefined;
    const entry = describeTask(summary, this.seen.get(taskId));
    const item = element("li", "task");
    item.dataset.taskId = entry.taskId;
    item.dataset.state = entry.state;
    if (this.hooks.currentTaskId() === entry.taskId) item.setAttribute("aria-current", "true");
    const row = this.rows.get(taskId);
    const parentId = parentOf(summary);
    if (parentId) item.dataset.parentId = parentId;
    item.dataset.depth = String(row?.depth ?? 0);
    item.style.setProperty("--depth", String(Math.min(row?.depth ?? 0, MAX_DRAWN_DEPTH)));
    const button = element("button", "link task-title", entry.title) as HTMLButtonElement;
    button.type = "button";
    button.title = entry.repository;
    button.addEventListener("click", () => this.hooks.open(entry.taskId, this.mode));
    if (parentId) {
      // A follow-up: marked as one, and said so to a screen reader.
      const parentTitle = this.titleOf(parentId);
      const mark = element("span", "task-follow-up", "↳ ");
      mark.setAttribute("aria-hidden", "true");
      button.setAttribute("aria-label", `${entry.title} (follow-up of ${parentTitle ?? "an earlier task"})`);
      if (row?.unlistedParentId) button.title = `${entry.repository}\nA follow-up of an earlier task (More lists it)`;
      item.append(mark);
    }
    const meta = element("div", "task-meta");
    const state = element("span", "badge task-state", entry.stateLabel);
    state.dataset.state = entry.state;
    meta.append(state);
    // A running task's time is what matters most after its state; an ended one's comes last.
    const elapsed = element("span", "task-elapsed");
    if (!entry.ended && entry.createdMs) {
      elapsed.dataset.since = String(entry.createdMs);
      meta.append(" · ", elapsed);
    }
    if (entry.cost) meta.append(" · ", element("span", "task-cost", entry.cost));
    if (entry.created) {
      const time = element("time", "task-created", entry.created);
      time.setAttribute("datetime", new Date(entry.createdMs).toISOString());
      meta.append(" · ", time);
    }
    const took = elapsedOf(entry, Date.now());
    if (entry.ended && took) meta.append(" · ", element("span", "task-took", `took ${took}`));
    const where = element("div", "task-where");
    where.append(element("span", "task-repository", repositoryName(summary.repositoryUrl)), " · ", element("code", "task-short-id", shortId(entry.taskId)));
    item.append(button, meta, where);
    return item;
  }

  /** The title of a listed task (its prompt's first line), if listed. */
  titleOf(taskId: string): string | undefined {
    const summary = this.list.get(taskId);
    return summary ? describeTask(summary).title : undefined;
  }

  /** Brings the running entries' elapsed times up to date, every second while one runs. */
  private tickElapsed() {
    const running = document.querySelectorAll<HTMLElement>(`#${this.ids.list} .task-elapsed[data-since]`);
    for (const span of running) span.textContent = elapsedOf({ createdMs: Number(span.dataset.since), ended: false, endedMs: 0 }, Date.now());
    window.clearTimeout(this.clock);
    if (running.length > 0) this.clock = window.setTimeout(() => this.tickElapsed(), 1000);
  }
}

/** A repository's short name in the list: its last path segment, without ".git". */
export const repositoryName = (url: string): string => url.replace(/\/+$/, "").split(/[/:]/).pop()?.replace(/\.git$/, "") || url;

/** Whether the list's own entry of a task says it ended (the edge archived its end). */
export const listedAsEnded = (view: TaskListView, taskId: string): boolean | undefined => {
  const listed = view.list.get(taskId);
  return listed ? isFinal(stateName(listed.state)) : undefined;
};
