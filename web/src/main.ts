// The page: sign in, start a task, watch its timeline live, cancel it, come back to it later
// from the task lists (the edge's, so every browser of the user shows the same ones).
// DOM glue only; the logic lives in validate.ts, timeline.ts, tasks.ts, connection.ts and
// markdown.ts, threads.ts and follow_up.ts; the views in entry_view.ts, list_view.ts and
// follow_up_form.ts. Several tasks may run at once: the lists show each live, one timeline is open.

import type { Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { api, errorText } from "./api.js";
import { TaskConnection, type LinkState } from "./connection.js";
import { $ } from "./dom.js";
import { refreshToolOutput, renderEntry, STATE_LABELS } from "./entry_view.js";
import { FollowUpForm, type StartedFollowUp } from "./follow_up_form.js";
import { listedAsEnded, TaskListView } from "./list_view.js";
import { refusal } from "./refusals.js";
import type { Mode, Seen } from "./tasks.js";
import { renderThreadLinks } from "./thread_links.js";
import { formatCost, Timeline } from "./timeline.js";
import { fieldOfServiceError, validateStartForm, type StartForm } from "./validate.js";

/** What older pages kept of tunnel tasks; the edge lists those now. */
const OLD_RECENT_KEY = "autopilot.recent";
/** The task this browser shows, reopened after a reload (its session re-attaches at once). */
const CURRENT_KEY = "autopilot.current";

interface TaskRef {
  /** Absent on tasks remembered before tunnel mode existed: those ran in containers. */
  mode?: Mode;
  taskId: string;
  sessionId: string;
  /** The task this one follows up, when the page knows it without the list (it started it). */
  parentTaskId?: string;
}

let connection: TaskConnection | undefined;
let timeline = new Timeline();
/** The task whose timeline is shown. */
let current: TaskRef | undefined;
/** What this page saw of the tasks it followed (their list entries lag), and the two lists. */
const seen = new Map<string, Seen>();
const listHooks = { currentTaskId: () => current?.taskId, open: (id: string, mode: Mode) => void openListed(id, mode), rendered: listsRendered };
const lists: Record<Mode, TaskListView> = {
  container: new TaskListView("container", { section: "recent", list: "recent-list", status: "recent-status", more: "recent-more" }, seen, listHooks),
  tunnel: new TaskListView("tunnel", { section: "tunnel-recent", list: "tunnel-list", status: "tunnel-recent-status", more: "tunnel-more" }, seen, listHooks, true),
};
const followUp = new FollowUpForm(followUpStarted);
/** The sessions this page knows, by task (the tasks it started or opened): a task whose ticket by
 * id is refused (an edge that does not issue those for tunnel tasks) still opens by its session. */
const sessions = new Map<string, string>();
/** Numbers the tasks opened: only the latest one opens. */
let opening = 0;
let clock: number | undefined;
let tunnelPoll: number | undefined;

function show(view: "signin" | "app") {
  $("signin").hidden = view !== "signin";
  $("app").hidden = view !== "app";
}

async function refreshBalance() {
  const { ok, body } = await api("/api/billing/balance");
  if (!ok) return;
  $("balance").textContent = `${body.balance} credits`;
  // Credits only matter for containers: tunnel mode runs on the user's own machine for free.
  const low = body.balance < body.minimumToStart && selectedMode() === "container";
  $("no-credits").hidden = !low;
  $("no-credits").textContent = low ? `Not enough credits to start: ${body.balance} left, ${body.minimumToStart} needed.` : "";
}

async function signedIn(userId: string) {
  $("user").textContent = userId;
  show("app");
  await refreshBalance();
  localStorage.removeItem(OLD_RECENT_KEY);
  void lists.container.refresh();
  void lists.tunnel.refresh();
  const stored = localStorage.getItem(CURRENT_KEY);
  if (stored) openTask(JSON.parse(stored) as TaskRef);
}

async function signIn(event: SubmitEvent) {
  event.preventDefault();
  const token = ($("token") as HTMLInputElement).value.trim();
  const { ok, body, status } = await api("/api/auth/signin", { method: "POST", body: JSON.stringify({ token }) });
  if (!ok) {
    $("signin-error").textContent = errorText(body, status);
    return;
  }
  ($("token") as HTMLInputElement).value = "";
  $("signin-error").textContent = "";
  await signedIn(body.userId);
}

function readForm(): StartForm {
  const value = (id: string) => ($(id) as HTMLInputElement | HTMLTextAreaElement).value;
  return {
    repositoryUrl: value("repositoryUrl"),
    gitRef: value("gitRef"),
    prompt: value("prompt"),
    model: value("model"),
    maxTurns: value("maxTurns"),
    maxBudgetUsd: value("maxBudgetUsd"),
  };
}

function showFieldErrors(errors: Partial<Record<keyof StartForm, string>>) {
  for (const field of ["repositoryUrl", "gitRef", "prompt", "model", "maxTurns", "maxBudgetUsd"] as const) {
    const input = $(field);
    const message = $(`${field}-error`);
    message.textContent = errors[field] ?? "";
    input.setAttribute("aria-invalid", errors[field] ? "true" : "false");
  }
  const first = Object.keys(errors)[0];
  if (first) $(first).focus();
}

async function start(event: SubmitEvent) {
  event.preventDefault();
  const { errors, request } = validateStartForm(readForm());
  showFieldErrors(errors);
  if (!request) return;
  const button = $("start") as HTMLButtonElement;
  button.disabled = true;
  // The open timeline (maybe of a task still running) stays until the new task has started: a
  // refused start leaves it as it was. One opened from the list meanwhile wins over the new task.
  const mine = ++opening;
  const mode = selectedMode();
  setStatus(mode === "tunnel" ? "Starting on your machine…" : "Starting the container…");
  const { ok, body, status } = await api(`/api/${mode}/start`, { method: "POST", body: JSON.stringify(request) });
  button.disabled = false;
  setStatus("");
  void lists[mode].refresh();
  if (!ok) {
    const field = fieldOfServiceError(errorText(body, status));
    if (field) showFieldErrors({ [field]: errorText(body, status) });
    setStatus(refusal(status, body, mode, "start"), true);
    await refreshBalance();
    return;
  }
  if (mine !== opening) return; // the list shows it
  const task: TaskRef = { mode, taskId: body.taskId, sessionId: body.sessionId };
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  openTask(task, body.websocketUrl);
}

/** A follow-up of the open task started: its timeline opens (unless the user moved on). */
function followUpStarted(started: StartedFollowUp, stillShown: boolean) {
  void lists[started.mode].refresh();
  if (!stillShown) return;
  opening++;
  const { mode, taskId, sessionId, parentTaskId } = started;
  const task: TaskRef = { mode, taskId, sessionId, parentTaskId };
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  openTask(task, started.websocketUrl);
}

/** A list was drawn: the page's "no tasks yet" line (once both lists arrived, and both are
 * empty) and the open timeline's links to the turns before and after it may change. */
function listsRendered() {
  $("recent-empty").hidden = !(lists.container.empty && lists.tunnel.empty);
  showThreadLinks();
}

/** The open timeline's links to the turns before and after it in its conversation. */
function showThreadLinks() {
  const mode = current?.mode ?? "container";
  renderThreadLinks(current, current && lists[mode], (taskId) => void openListed(taskId, mode));
}

/** Opens a listed task's timeline, whichever browser started it: a new session on the task (from
 * the edge's archive once the task ended; for a tunnel task, the relay's), then the usual connection. */
async function openListed(taskId: string, mode: Mode) {
  const mine = ++opening;
  const view = lists[mode];
  const opensNow = "Opening the task…";
  view.setStatus(opensNow);
  const ticket = (ask: object) => api(`/api/${mode}/ws-ticket`, { method: "POST", body: JSON.stringify(ask) });
  let { ok, body, status } = await ticket({ taskId });
  const known = sessions.get(taskId);
  if (!ok && known && mine === opening) ({ ok, body, status } = await ticket({ sessionId: known }));
  if (mine !== opening) return view.unsay(opensNow); // another task was opened or started meanwhile
  if (!ok) return view.setStatus(`The task could not be opened: ${errorText(body, status)}`, true);
  view.setStatus("");
  const task: TaskRef = { mode, taskId, sessionId: body.sessionId };
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  openTask(task, body.websocketUrl);
  $("task").scrollIntoView({ block: "start" });
}

/** The shown task ended: the list is loaded again unless it already says so. The edge archives
 * the end just after the stream ends, so an answer still showing it running is asked again. */
async function refreshAfterEnd(taskId: string, view: TaskListView) {
  for (let attempt = 0; attempt < 5; attempt++) {
    if (listedAsEnded(view, taskId)) return;
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    if (current?.taskId !== taskId) return;
    await view.refresh();
    if (listedAsEnded(view, taskId) === undefined) return; // not listed (yet): nothing to bring up to date
  }
}

function setStatus(text: string, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function openTask(task: TaskRef, websocketUrl?: string) {
  connection?.close();
  current = task;
  sessions.set(task.taskId, task.sessionId);
  timeline = new Timeline();
  $("timeline").replaceChildren();
  $("task").hidden = false;
  for (const view of Object.values(lists)) view.markCurrent(task.taskId);
  $("task-id").textContent = task.taskId;
  ($("cancel") as HTMLButtonElement).disabled = false;
  showThreadLinks();
  followUp.show({ mode: task.mode ?? "container", taskId: task.taskId }, false);
  renderSummary();
  connection = new TaskConnection(task.mode ?? "container", task.sessionId, task.taskId, {
    onEvent: (event) => {
      applyEvent(event);
      return timeline.lastSeq;
    },
    onLink: (state, detail) => renderLink(state, detail),
    onReply: (kind, message) => {
      if (kind === "error") setStatus(message, true);
    },
  });
  void connection.connect(websocketUrl);
  window.clearInterval(clock);
  clock = window.setInterval(renderSummary, 500);
}

function renderLink(state: LinkState, detail?: string) {
  const link = $("link");
  link.dataset.state = state;
  link.textContent = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: `Reconnecting…${detail ? ` (${detail})` : ""}`,
    ended: "Finished",
    failed: `Stream failed: ${detail ?? ""}`,
  }[state];
}

function applyEvent(event: Event) {
  const before = timeline.entries.length;
  const lastBefore = timeline.entries[before - 1];
  const wasEnded = timeline.ended;
  if (!timeline.apply(event)) return;
  const list = $("timeline");
  if (timeline.entries.length > before) {
    for (const entry of timeline.entries.slice(before)) list.append(renderEntry(entry, timeline));
  } else if (before > 0 && timeline.entries[before - 1] !== lastBefore) {
    // A new git progress line replaces the previous one in place.
    list.lastElementChild?.replaceWith(renderEntry(timeline.entries[before - 1], timeline));
  }
  if (event.payload.case === "toolFinished") refreshToolOutput(event.payload.value.toolId, timeline);
  renderSummary();
  noteSeen();
  if (timeline.ended && !wasEnded) {
    ($("cancel") as HTMLButtonElement).disabled = true;
    if (current) followUp.show({ mode: current.mode ?? "container", taskId: current.taskId }, true);
    window.clearInterval(clock);
    void refreshBalance();
    if (current) void refreshAfterEnd(current.taskId, lists[current.mode ?? "container"]);
  }
}

/** Keeps what the timeline shows of the task for its list entry (the list's own summary of a
 * running task lags), and shows it there when it changed. */
function noteSeen() {
  if (!current) return;
  const now: Seen = { state: timeline.state, costUsd: timeline.usage.costUsd };
  const before = seen.get(current.taskId);
  if (before?.state === now.state && before.costUsd === now.costUsd) return;
  seen.set(current.taskId, now);
  lists[current.mode ?? "container"].rerender(current.taskId);
}

function renderSummary() {
  const elapsed = timeline.startedAtMs ? ((timeline.ended ? timeline.lastEventMs() : Date.now()) - timeline.startedAtMs) / 1000 : 0;
  $("state").textContent = `${STATE_LABELS[timeline.state] ?? timeline.state} · ${elapsed.toFixed(1)} s`;
  $("state").dataset.state = timeline.state;
  const u = timeline.usage;
  $("usage").textContent = `${u.inputTokens} in / ${u.outputTokens} out tokens · ${formatCost(u.costUsd)}`;
}

function selectedMode(): Mode {
  return document.querySelector<HTMLInputElement>('input[name="mode"]:checked')?.value === "tunnel" ? "tunnel" : "container";
}

/** Shows whether the user's machine is connected, polling while tunnel mode is chosen. */
async function renderTunnel() {
  const tunnel = selectedMode() === "tunnel";
  $("tunnel-panel").hidden = !tunnel;
  window.clearTimeout(tunnelPoll);
  if (!tunnel) return;
  $("connect-command").textContent = `AUTOPILOT_TOKEN=<your API token> agent-service connect --edge ${location.origin}`;
  const { ok, body } = await api("/api/tunnel/status");
  const status = $("tunnel-status");
  status.dataset.connected = String(ok && body.connected === true);
  status.textContent = !ok
    ? "Could not ask whether your machine is connected."
    : body.connected
      ? `Your machine is connected (since ${new Date(body.connectedSinceMs).toLocaleTimeString()}).`
      : "Your machine is not connected.";
  tunnelPoll = window.setTimeout(() => void renderTunnel(), 3000);
}

async function main() {
  $("signin-form").addEventListener("submit", (e) => void signIn(e as SubmitEvent));
  $("start-form").addEventListener("submit", (e) => void start(e as SubmitEvent));
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", () => {
    void renderTunnel();
    void refreshBalance();
  });
  $("cancel").addEventListener("click", () => {
    connection?.cancel();
    setStatus("Cancelling…");
  });
  $("signout").addEventListener("click", async () => {
    connection?.close();
    connection = undefined;
    current = undefined;
    followUp.show(undefined, false);
    opening++;
    await api("/api/auth/signout", { method: "POST" });
    localStorage.removeItem(CURRENT_KEY);
    // The next user must not see this one's lists, nor a load of them still on its way.
    seen.clear();
    sessions.clear();
    for (const view of Object.values(lists)) view.clear();
    $("task").hidden = true;
    show("signin");
  });
  // For tests and the curious: drop the socket as a network failure would.
  (window as unknown as { autopilot: object }).autopilot = { dropSocket: () => connection?.drop() };
  const { ok, body } = await api("/api/auth/me");
  if (ok) await signedIn(body.userId);
  else show("signin");
}

void main();
