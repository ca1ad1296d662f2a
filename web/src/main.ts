// The page: sign in, then a workspace of two panes: the task lists on the left (a drawer on a
// phone), and on the right either the New task composer ("/") or the open task as a conversation
// (/tasks/<id>, /machine/tasks/<id>), with its controls and the follow-up composer. Each task has
// an address: opening one pushes it, back and forward move between tasks, and an address opens its
// task directly after sign-in. The lists are the edge's, so every browser of the user shows the
// same tasks. DOM glue only; the logic lives in plain modules (routes, controls, titles, timeline,
// tasks, connection, validate, refusals, follow_up, announcements), the views in conversation.tsx,
// diff_view.tsx, list_view.tsx and follow_up_form.ts; GitHub's parts in github.ts, the environments
// panel in environments.ts, tunnel mode's panel in tunnel_panel.ts.

import type { Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { announcementFor, Announcer } from "./announcements.js";
import { api, errorText } from "./api.js";
import { TaskConnection, type LinkState } from "./connection.js";
import { controlsFor } from "./controls.js";
import { ConversationView, STATE_LABELS } from "./conversation.js";
import { $ } from "./dom.js";
import { Drawer } from "./drawer.js";
import { FollowUpForm, type StartedFollowUp } from "./follow_up_form.js";
import { hideEnvironments, initEnvironments, offerEnvironments } from "./environments.js";
import { renderTunnel, selectedMode } from "./tunnel_panel.js";
import { disconnectGitHub, initGitHub, pullRequestAsked, showGitHubConnection, showPullRequest, showPullRequestOnceOpened } from "./github.js";
import { recallRepository, rememberRepository } from "./last_repository.js";
import { listedAsEnded, TaskListView } from "./list_view.js";
import { refusal } from "./refusals.js";
import { replayFrames } from "./render_budget.js";
import { settleTabStop, enableRovingFocus } from "./roving_focus.js";
import { pathOf, placeOf, type Place } from "./routes.js";
import { sendOnCtrlEnter } from "./send_shortcut.js";
import type { Mode, Seen } from "./tasks.js";
import { renderThreadLinks } from "./thread_links.js";
import { formatCost, Timeline } from "./timeline.js";
import { taskTitle } from "./titles.js";
import { fieldOfServiceError, validateStartForm, type StartForm } from "./validate.js";

/** What older pages kept of tunnel tasks; the edge lists those now. */
const OLD_RECENT_KEY = "autopilot.recent";
/** The task this browser showed last: its session re-attaches when its address is opened again. */
const CURRENT_KEY = "autopilot.current";
/** Events recorded longer ago than this are a replay: not announced one by one. */
const LIVE_WITHIN_MS = 10_000;

interface TaskRef {
  /** Absent on tasks remembered before tunnel mode existed: those ran in containers. */
  mode?: Mode;
  taskId: string;
  sessionId: string;
  /** The task this one follows up, when the page knows it without the list (it started it). */
  parentTaskId?: string;
  /** The whole prompt, when this page started the task (the list has its first line only). */
  prompt?: string;
}

let connection: TaskConnection | undefined;
let timeline = new Timeline();
/** The task whose conversation is shown (undefined: the New task composer is). */
let current: TaskRef | undefined;
/** What this page saw of the tasks it followed (their list entries lag), and the two lists. */
const seen = new Map<string, Seen>();
const listHooks = { currentTaskId: () => current?.taskId, open: (id: string, mode: Mode) => void openListed(id, mode), rendered: listsRendered };
const lists: Record<Mode, TaskListView> = {
  container: new TaskListView("container", { section: "recent", list: "recent-list", status: "recent-status", more: "recent-more" }, seen, listHooks),
  tunnel: new TaskListView("tunnel", { section: "tunnel-recent", list: "tunnel-list", status: "tunnel-recent-status", more: "tunnel-more" }, seen, listHooks, true),
};
const followUp = new FollowUpForm(followUpStarted);
const announcer = new Announcer($("announcer"));
const drawer = new Drawer();
/** For the render budget (tests/browser.rs prints it): when the open task was opened, and when
 * its whole timeline, ended, was first drawn. */
const render = { openedAt: 0, events: 0, ms: 0, firstEventMs: 0, lastEventMs: 0, drawMs: 0, draws: 0, applyMs: 0 };
const conversation = new ConversationView($("timeline"), (drawn, tookMs) => {
  render.drawMs += tookMs;
  render.draws++;
  if (!drawn.ended || render.ms !== 0 || drawn !== timeline) return;
  // Drawn and laid out: the frame after the draw.
  const openedAt = render.openedAt;
  requestAnimationFrame(() => {
    if (render.openedAt !== openedAt) return;
    render.ms = performance.now() - openedAt;
    render.events = drawn.lastSeq;
  });
});
/** The sessions this page knows, by task (the tasks it started or opened): a task whose ticket by
 * id is refused (an edge that does not issue those for tunnel tasks) still opens by its session. */
const sessions = new Map<string, string>();
/** Numbers the tasks opened: only the latest one opens. */
let opening = 0;
let clock: number | undefined;

function show(view: "signin" | "app") {
  $("signin").hidden = view !== "signin";
  $("app").hidden = view !== "app";
  $("account").hidden = view !== "app";
  document.body.classList.toggle("signed-in", view === "app");
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
  localStorage.removeItem(OLD_RECENT_KEY);
  void lists.container.refresh();
  void lists.tunnel.refresh();
  // The address the user came to (a task's, say) opens now that they are signed in.
  showPlace(placeOf(location.pathname));
  await Promise.all([refreshBalance(), showGitHubConnection(), offerEnvironments()]);
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

/** Shows `place` (after sign-in, or back/forward): the composer, or a task's conversation. */
function showPlace(place: Place) {
  if (place.view === "new") return showComposer();
  if (current?.taskId === place.taskId && (current.mode ?? "container") === place.mode) return;
  // The task this browser showed last keeps its whole prompt, and its session opens it where a
  // ticket by id is refused (a tunnel task, on a relay that issues those by session only).
  const stored = JSON.parse(localStorage.getItem(CURRENT_KEY) ?? "null") as TaskRef | null;
  const remembered = stored?.taskId === place.taskId && (stored.mode ?? "container") === place.mode ? stored : undefined;
  if (remembered?.sessionId) sessions.set(remembered.taskId, remembered.sessionId);
  void openListed(place.taskId, place.mode, false, remembered);
}

/** Moves the address to `place` (a new history entry) unless it is there already. */
function pushPlace(place: Place) {
  const path = pathOf(place);
  if (location.pathname !== path) history.pushState(null, "", path);
}

/** The New task composer in the right pane; the open task (if any) is closed. */
function showComposer() {
  hideEnvironments();
  connection?.close();
  connection = undefined;
  current = undefined;
  opening++;
  window.clearInterval(clock);
  followUp.show(undefined, false);
  $("task").hidden = true;
  $("start-form").hidden = false;
  for (const view of Object.values(lists)) view.markCurrent();
  settleListTabStop();
  document.title = "New task · Autopilot";
  const last = recallRepository(localStorage);
  if (last && !($("repositoryUrl") as HTMLInputElement).value) {
    ($("repositoryUrl") as HTMLInputElement).value = last.repositoryUrl;
    ($("gitRef") as HTMLInputElement).value = last.gitRef;
  }
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
    pullRequest: pullRequestAsked(),
    environment: ($("environment") as HTMLSelectElement).value,
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
  const form = readForm();
  const { errors, request } = validateStartForm(form);
  showFieldErrors(errors);
  if (!request) return;
  const button = $("start") as HTMLButtonElement;
  button.disabled = true;
  // A task opened from the list meanwhile wins over the new task (the list shows it); a refused
  // start leaves the composer as it was, the words kept, and says why under it.
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
  rememberRepository(localStorage, { repositoryUrl: form.repositoryUrl.trim(), gitRef: form.gitRef.trim() });
  ($("prompt") as HTMLTextAreaElement).value = "";
  if (mine !== opening) return;
  openTask({ mode, taskId: body.taskId, sessionId: body.sessionId, prompt: form.prompt }, body.websocketUrl);
}

/** A follow-up of the open task started: its conversation opens (unless the user moved on). */
function followUpStarted(started: StartedFollowUp, stillShown: boolean) {
  void lists[started.mode].refresh();
  if (!stillShown) return;
  opening++;
  const { mode, taskId, sessionId, parentTaskId, prompt } = started;
  openTask({ mode, taskId, sessionId, parentTaskId, prompt }, started.websocketUrl);
}

/** A list was drawn: the "no tasks yet" line, the keyboard's stop in the lists, and the open
 * task's title and links to the turns before and after it may change. */
function listsRendered() {
  $("recent-empty").hidden = !(lists.container.empty && lists.tunnel.empty);
  settleListTabStop();
  showHeading();
  showThreadLinks();
}

function settleListTabStop() {
  settleTabStop($("sidebar"), ".task-title", 'li[aria-current="true"] .task-title');
}

/** The open conversation's links to the turns before and after it in its conversation. */
function showThreadLinks() {
  const mode = current?.mode ?? "container";
  renderThreadLinks(current, current && lists[mode], (taskId) => void openListed(taskId, mode));
}

/** The open task's title (its prompt's first line), id, repository and the user's turn. */
function showHeading() {
  if (!current) return;
  const view = lists[current.mode ?? "container"];
  const summary = view.list.get(current.taskId);
  const listed = summary?.title;
  const title = taskTitle(current.taskId, current.prompt, listed);
  $("task-title").textContent = title;
  $("task-id").textContent = current.taskId;
  $("task-repository").textContent = summary ? `· ${summary.gitRef ? `${summary.repositoryUrl} @ ${summary.gitRef}` : summary.repositoryUrl}` : "";
  const pull = summary?.pullRequest;
  showPullRequest(current.taskId, pull && { number: pull.number, url: pull.url, draft: pull.draft, error: pull.error, adopted: pull.adopted });
  document.title = `${title} · Autopilot`;
  const turn = current.prompt ?? listed ?? "";
  $("prompt-turn").hidden = turn.trim() === "";
  $("prompt-text").textContent = turn;
}

/** Opens a listed task's conversation, whichever browser started it: a new session on the task
 * (from the edge's archive once the task ended; for a tunnel task, the relay's), then the usual
 * connection. `fromList`: a refusal is said in the list (where the user clicked), else in the pane;
 * `remembered`: what this browser kept of the task when it showed it last. */
async function openListed(taskId: string, mode: Mode, fromList = true, remembered?: TaskRef) {
  const openedAt = performance.now();
  const mine = ++opening;
  const view = lists[mode];
  const opensNow = "Opening the task…";
  const say = (text: string, isError = false) => (fromList ? view.setStatus(text, isError) : setTaskStatus(text, isError));
  if (!fromList) showOpening(taskId, mode);
  say(opensNow);
  const ticket = (ask: object) => api(`/api/${mode}/ws-ticket`, { method: "POST", body: JSON.stringify(ask) });
  let { ok, body, status } = await ticket({ taskId });
  const known = sessions.get(taskId);
  if (!ok && known && mine === opening) ({ ok, body, status } = await ticket({ sessionId: known }));
  if (mine !== opening) return fromList ? view.unsay(opensNow) : undefined; // another task was opened or started meanwhile
  if (!ok) return say(`The task could not be opened: ${errorText(body, status)}`, true);
  say("");
  const { prompt, parentTaskId } = remembered ?? {};
  openTask({ mode, taskId, sessionId: body.sessionId, prompt, parentTaskId }, body.websocketUrl, fromList, openedAt);
}

/** An address being opened: the pane shows the task's heading at once, its conversation to come. */
function showOpening(taskId: string, mode: Mode) {
  connection?.close();
  current = { mode, taskId, sessionId: "" };
  timeline = new Timeline();
  conversation.show(timeline);
  $("start-form").hidden = true;
  hideEnvironments();
  $("task").hidden = false;
  $("cancel").hidden = true;
  showHeading();
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

/** Says something under the New task composer. */
function setStatus(text: string, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

/** Says something about the open task, under its heading. */
function setTaskStatus(text: string, isError = false) {
  const status = $("task-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

/** Opens `task`'s conversation in the right pane; `push`: a new address in the history;
 * `openedAt`: when the user asked for it (the render budget counts from there). */
function openTask(task: TaskRef, websocketUrl?: string, push = true, openedAt = performance.now()) {
  connection?.close();
  current = task;
  if (push) pushPlace({ view: "task", mode: task.mode ?? "container", taskId: task.taskId });
  sessions.set(task.taskId, task.sessionId);
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  timeline = new Timeline();
  Object.assign(render, { openedAt, ms: 0, firstEventMs: 0, lastEventMs: 0, drawMs: 0, draws: 0, applyMs: 0 });
  conversation.show(timeline);
  $("start-form").hidden = true;
  hideEnvironments();
  $("task").hidden = false;
  setTaskStatus("");
  drawer.close();
  for (const view of Object.values(lists)) view.markCurrent();
  settleListTabStop();
  showHeading();
  announcer.now(`Opened ${$("task-title").textContent}`);
  showThreadLinks();
  followUp.show({ mode: task.mode ?? "container", taskId: task.taskId }, false);
  showControls();
  renderSummary();
  connection = new TaskConnection(task.mode ?? "container", task.sessionId, task.taskId, {
    onEvent: (event) => {
      const began = performance.now();
      applyEvent(event);
      render.applyMs += performance.now() - began;
      return timeline.lastSeq;
    },
    onLink: (state, detail) => renderLink(state, detail),
    onReply: (kind, message) => {
      if (kind === "error") setTaskStatus(message, true);
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

/** Cancel while the task runs, the follow-up composer once it ended (controls.ts). */
function showControls() {
  const controls = controlsFor(timeline.state, timeline.ended);
  $("cancel").hidden = !controls.cancel;
  if (current) followUp.show({ mode: current.mode ?? "container", taskId: current.taskId }, controls.followUp);
}

function applyEvent(event: Event) {
  const before = timeline.entries.length;
  const wasEnded = timeline.ended;
  const wasState = timeline.state;
  if (!timeline.apply(event)) return;
  render.lastEventMs = performance.now() - render.openedAt;
  render.firstEventMs ||= render.lastEventMs;
  conversation.schedule();
  const atMs = event.time ? Number(event.time.seconds) * 1000 : 0;
  if (Date.now() - atMs < LIVE_WITHIN_MS) for (const entry of timeline.entries.slice(before)) announcer.announce(announcementFor(entry));
  if (timeline.state !== wasState || timeline.ended !== wasEnded) showControls();
  noteSeen();
  if (timeline.ended && !wasEnded) {
    if ($("task-status").textContent === "Cancelling…") setTaskStatus("");
    renderSummary();
    window.clearInterval(clock);
    void refreshBalance();
    if (current) void refreshAfterEnd(current.taskId, lists[current.mode ?? "container"]);
    const taskId = current?.taskId;
    if (taskId && (current?.mode ?? "container") === "container") void showPullRequestOnceOpened(taskId, () => current?.taskId === taskId);
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

async function signOut() {
  showComposer();
  await api("/api/auth/signout", { method: "POST" });
  localStorage.removeItem(CURRENT_KEY);
  // The next user must not see this one's lists, nor a load of them still on its way.
  seen.clear();
  sessions.clear();
  for (const view of Object.values(lists)) view.clear();
  show("signin");
}

async function main() {
  $("signin-form").addEventListener("submit", (e) => void signIn(e as SubmitEvent));
  $("start-form").addEventListener("submit", (e) => void start(e as SubmitEvent));
  sendOnCtrlEnter($("prompt") as HTMLTextAreaElement);
  sendOnCtrlEnter($("follow-up-prompt") as HTMLTextAreaElement);
  enableRovingFocus($("sidebar"), ".task-title");
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", () => {
    void renderTunnel();
    void refreshBalance();
  });
  $("new-task").addEventListener("click", () => {
    pushPlace({ view: "new" });
    showComposer();
    drawer.close();
    $("prompt").focus();
  });
  $("cancel").addEventListener("click", () => {
    connection?.cancel();
    setTaskStatus("Cancelling…");
  });
  $("signout").addEventListener("click", () => void signOut());
  $("github-disconnect").addEventListener("click", () => void disconnectGitHub());
  initEnvironments(() => {
    drawer.close();
    pushPlace({ view: "new" });
    showComposer();
    $("start-form").hidden = true;
  });
  window.addEventListener("popstate", () => showPlace(placeOf(location.pathname)));
  // For tests and the curious: drop the socket as a network failure would; the render figures.
  // The render budget's check (render_budget.ts): recorded frames replayed into a fresh timeline.
  const replay = (frames: string[]) => {
    connection?.close();
    timeline = new Timeline();
    conversation.show(timeline);
    return replayFrames(frames, applyEvent, () => timeline.ended && conversation.idle);
  };
  (window as unknown as { autopilot: object }).autopilot = { dropSocket: () => connection?.drop(), render, replayFrames: replay };
  await initGitHub();
  const { ok, body } = await api("/api/auth/me");
  if (ok) await signedIn(body.userId);
  else show("signin");
}

void main();
