// The user's task lists as the edge serves them (GET /api/tasks for the container's tasks, GET
// /api/tunnel/tasks for those that ran on the user's machine; both newest first, a page at a
// time), and what each entry shows. Pure: no DOM and no fetch, so it is unit-tested in Node.
//
// The edge's summary of a running task keeps the state it had when it started until the task's
// end is archived, so a task this page has followed (its open timeline) shows what the page saw
// of it instead, until the list itself says the task ended.

import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ListTasksResponseSchema, type TaskSummary } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { formatCost, stateName } from "./timeline.js";

/** Where a task runs: a container at the edge (paid), or the user's own machine (tunnel, free).
 * Each has its own list, and its tasks open through its own routes. */
export type Mode = "container" | "tunnel";

/** Tasks per page of the list; "More" asks for the next one. */
export const PAGE_SIZE = 5;
/** The largest page the edge serves (a refresh asks for everything shown, up to this). */
export const MAX_PAGE_SIZE = 100;

export interface TaskPage {
  tasks: TaskSummary[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/** What this page saw of a task it followed: its latest state and model cost. */
export interface Seen {
  state: string;
  costUsd: number;
}

/** One entry of the list, ready to show. */
export interface TaskEntry {
  taskId: string;
  /** The prompt's first line, or the repository when the task has no title. */
  title: string;
  /** The state's short name ("SUCCEEDED"), as the timeline names it. */
  state: string;
  stateLabel: string;
  ended: boolean;
  /** "$0.0123"; empty while a task's cost is not known yet. */
  cost: string;
  createdMs: number;
  created: string;
  /** When the task ended (0 while it runs, or when the edge does not say). */
  endedMs: number;
  /** The repository and ref, for a tooltip. */
  repository: string;
}

const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]);

const LABELS: Record<string, string> = {
  PENDING: "Starting",
  CLONING: "Cloning",
  RUNNING: "Running",
  SUCCEEDED: "Succeeded",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
};

export const isFinal = (state: string): boolean => FINAL.has(state);

/** A GET /api/tasks reply (ListTasksResponse in proto3 JSON); fields it does not know are skipped. */
export function parseTaskPage(json: unknown): TaskPage {
  const page = fromJson(ListTasksResponseSchema, json as JsonValue, { ignoreUnknownFields: true });
  return { tasks: page.tasks, nextPageToken: page.nextPageToken };
}

/** The list entry of `summary`; `seen` (what this page followed of it) wins until the task ended. */
export function describeTask(
  summary: TaskSummary,
  seen?: Seen,
  formatTime: (ms: number) => string = (ms) => new Date(ms).toLocaleString(),
): TaskEntry {
  const listed = stateName(summary.state);
  const live = seen && !isFinal(listed) ? seen : undefined;
  const state = live?.state ?? listed;
  const ended = isFinal(state);
  const costUsd = live?.costUsd ?? summary.usage?.costUsd;
  // A task that ended without reporting usage cost nothing; a running one may not have said yet.
  const cost = costUsd !== undefined || ended ? formatCost(costUsd ?? 0) : "";
  const createdMs = summary.createTime ? timestampMs(summary.createTime) : 0;
  const endedMs = ended && summary.endTime ? timestampMs(summary.endTime) : 0;
  const repository = summary.gitRef ? `${summary.repositoryUrl} @ ${summary.gitRef}` : summary.repositoryUrl;
  return {
    taskId: summary.taskId,
    title: summary.title.trim() || summary.repositoryUrl,
    state,
    stateLabel: LABELS[state] ?? state,
    ended,
    cost,
    createdMs,
    created: createdMs ? formatTime(createdMs) : "",
    endedMs,
    repository,
  };
}

/** The tasks listed so far: the first pages, in order, each task once. */
export class TaskList {
  tasks: TaskSummary[] = [];
  nextPageToken = "";
  /** Whether a page has arrived (before that, "no tasks" is not known). */
  loaded = false;

  /** The first page(s) again, replacing what was listed (after a task started or ended). */
  replace(page: TaskPage) {
    this.tasks = dedupe(page.tasks);
    this.nextPageToken = page.nextPageToken;
    this.loaded = true;
  }

  /** The first page(s) again, as large as what is listed ([`refreshSize`]): newer tasks and
   * every listed task's news come in, and the tasks they pushed past the page's end stay listed
   * (with the token after them), so "More" the user clicked is not undone by tasks started since.
   * A page that reaches the end of the list is the whole list: a task missing from it is gone. */
  refresh(page: TaskPage) {
    if (!this.loaded || page.nextPageToken === "") return this.replace(page);
    const fresh = new Set(page.tasks.map((t) => t.taskId));
    const pushedOut = this.tasks.filter((t) => !fresh.has(t.taskId));
    this.tasks = dedupe([...page.tasks, ...pushedOut]);
    if (pushedOut.length === 0) this.nextPageToken = page.nextPageToken;
  }

  /** Forgets the list (the user signed out). */
  clear() {
    this.tasks = [];
    this.nextPageToken = "";
    this.loaded = false;
  }

  /** The next page, after what is listed; a task already listed (the list moved) stays put. */
  append(page: TaskPage) {
    this.tasks = dedupe([...this.tasks, ...page.tasks]);
    this.nextPageToken = page.nextPageToken;
  }

  get(taskId: string): TaskSummary | undefined {
    return this.tasks.find((t) => t.taskId === taskId);
  }

  get hasMore(): boolean {
    return this.nextPageToken !== "";
  }

  /** The page size a refresh asks for, so as many tasks stay listed as "More" had shown. */
  refreshSize(): number {
    return Math.min(Math.max(this.tasks.length, PAGE_SIZE), MAX_PAGE_SIZE);
  }
}

function dedupe(tasks: TaskSummary[]): TaskSummary[] {
  const seen = new Set<string>();
  return tasks.filter((t) => !seen.has(t.taskId) && Boolean(seen.add(t.taskId)));
}

/** The task `summary` follows up (empty: none, or not listed). */
export const parentOf = (summary: TaskSummary | undefined): string => summary?.parentTaskId ?? "";

/** The query of a page of `mode`'s list. */
export function pageQuery(mode: Mode, pageSize: number, pageToken = ""): string {
  const query = new URLSearchParams({ pageSize: String(pageSize) });
  if (pageToken) query.set("pageToken", pageToken);
  return `${mode === "tunnel" ? "/api/tunnel/tasks" : "/api/tasks"}?${query}`;
}

/** A span of time as the list shows it: "0.4 s", "42 s", "3 min 05 s", "2 h 07 min". */
export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const whole = Math.floor(seconds);
  if (whole < 60) return `${whole} s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  return `${Math.floor(whole / 3600)} h ${pad(Math.floor((whole % 3600) / 60))} min`;
}

/** How long the task of `entry` has run (by `nowMs`), or ran once ended; empty when unknown. */
export function elapsedOf(entry: Pick<TaskEntry, "createdMs" | "ended" | "endedMs">, nowMs: number): string {
  if (!entry.createdMs) return "";
  if (!entry.ended) return formatElapsed(nowMs - entry.createdMs);
  return entry.endedMs ? formatElapsed(entry.endedMs - entry.createdMs) : "";
}

/** Whether any of `tasks` is still running, as far as `seen` or the list knows (the list is then
 * polled, so every running task's state shows live). */
export function anyRunning(tasks: TaskSummary[], seen: Map<string, Seen>): boolean {
  return tasks.some((t) => !describeTask(t, seen.get(t.taskId)).ended);
}
