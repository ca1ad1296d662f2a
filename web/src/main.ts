// The page: sign in, start a task, watch its timeline live, cancel it, come back to it later
// from the task list (the edge's, so every browser of the user shows the same one).
// DOM glue only; the logic lives in validate.ts, timeline.ts, tasks.ts, connection.ts and markdown.ts.

import type { Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { TaskConnection, type LinkState } from "./connection.js";
import { renderMarkdown } from "./markdown.js";
import { describeTask, isFinal, pageQuery, PAGE_SIZE, parseTaskPage, TaskList, type Seen, type TaskPage } from "./tasks.js";
import { formatCost, stateName, Timeline, type Entry } from "./timeline.js";
import { fieldOfServiceError, validateStartForm, type StartForm } from "./validate.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
/** Tunnel tasks started in this browser (the edge does not list tunnel tasks yet). */
const RECENT_KEY = "autopilot.recent";
/** The task this browser shows, reopened after a reload. */
const CURRENT_KEY = "autopilot.current";

/** Where the agent runs: a container at the edge (paid), or the user's own machine (tunnel, free). */
type Mode = "container" | "tunnel";

interface TaskRef {
  /** Absent on tasks remembered before tunnel mode existed: those ran in containers. */
  mode?: Mode;
  taskId: string;
  sessionId: string;
  repositoryUrl: string;
  startedAtMs: number;
}

let connection: TaskConnection | undefined;
let timeline = new Timeline();
/** The task whose timeline is shown. */
let current: TaskRef | undefined;
/** The user's tasks as the edge lists them, and what this page saw of the ones it followed. */
const taskList = new TaskList();
const seen = new Map<string, Seen>();
/** The list's loads run one after the other, so a page of "More" always follows what is shown
 * and a refresh keeps it; a sign-out starts a new epoch, whose list no earlier load touches. */
let listLoads: Promise<void> = Promise.resolve();
let listEpoch = 0;
/** Numbers the tasks opened: only the latest one opens. */
let opening = 0;
let clock: number | undefined;
let tunnelPoll: number | undefined;

/** A JSON route of the edge. A state-changing request is sent as JSON, as the edge requires of
 * a request signed in by cookie. A network failure answers status 0. */
async function api(path: string, init: RequestInit = {}): Promise<{ ok: boolean; status: number; body: any }> {
  const headers = new Headers(init.headers);
  if ((init.method ?? "GET") !== "GET" && !headers.has("content-type")) headers.set("content-type", "application/json");
  try {
    const reply = await fetch(path, { ...init, headers });
    const body = await reply.json().catch(() => ({}));
    return { ok: reply.ok, status: reply.status, body };
  } catch (error) {
    return { ok: false, status: 0, body: { error: { message: `The edge could not be reached (${error}).` } } };
  }
}

function errorText(body: any, status: number): string {
  return body?.error?.message ?? `The request failed (HTTP ${status}).`;
}

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
  // Older pages remembered container tasks here too: the edge lists those now.
  localStorage.setItem(RECENT_KEY, JSON.stringify(tunnelTasks()));
  renderRecent();
  void refreshRecent();
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
  // The previous task's timeline gives way at once, so nothing stale is mistaken for the new one
  // (nor is a task being opened from the list meanwhile).
  opening++;
  connection?.close();
  connection = undefined;
  current = undefined;
  $("task").hidden = true;
  $("timeline").replaceChildren();
  const mode = selectedMode();
  setStatus(mode === "tunnel" ? "Starting on your machine…" : "Starting the container…");
  const { ok, body, status } = await api(`/api/${mode}/start`, { method: "POST", body: JSON.stringify(request) });
  button.disabled = false;
  setStatus("");
  if (!ok) {
    const message = errorText(body, status);
    const field = fieldOfServiceError(message);
    if (field) showFieldErrors({ [field]: message });
    const unavailable = mode === "tunnel" ? `Your machine is not reachable: ${message}` : `The container failed to start: ${message}`;
    setStatus(status === 402 ? `No credits: ${message}` : status === 503 ? unavailable : message, true);
    await refreshBalance();
    return;
  }
  const task: TaskRef = { mode, taskId: body.taskId, sessionId: body.sessionId, repositoryUrl: request.repositoryUrl, startedAtMs: Date.now() };
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  if (mode === "tunnel") rememberTunnelTask(task);
  openTask(task, body.websocketUrl);
  if (mode === "container") void refreshRecent();
}

function rememberTunnelTask(task: TaskRef) {
  const recent = tunnelTasks().filter((t) => t.taskId !== task.taskId);
  recent.unshift(task);
  localStorage.setItem(RECENT_KEY, JSON.stringify(recent.slice(0, 20)));
  renderRecent();
}

/** The tunnel tasks started in this browser, newest first. */
function tunnelTasks(): TaskRef[] {
  try {
    const stored = JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]") as TaskRef[];
    return Array.isArray(stored) ? stored.filter((t) => t.mode === "tunnel") : [];
  } catch {
    return [];
  }
}

/** Runs `load` after the list's earlier loads; it is skipped if the user signed out meanwhile. */
function queueListLoad(load: () => Promise<void>): Promise<void> {
  const epoch = listEpoch;
  listLoads = listLoads.then(() => (epoch === listEpoch ? load() : undefined)).catch(() => undefined);
  return listLoads;
}

/** Loads the list's first page again, as long as what is shown (after a task started or ended). */
function refreshRecent(): Promise<void> {
  return queueListLoad(async () => {
    if (!taskList.loaded) setRecentStatus("Loading your tasks…");
    await loadPage(taskList.refreshSize(), "", "The task list", (page) => taskList.replace(page));
  });
}

/** "More": the next page, after what is shown. */
function moreRecent(): Promise<void> {
  const more = $("recent-more") as HTMLButtonElement;
  more.disabled = true;
  return queueListLoad(async () => {
    if (taskList.hasMore) await loadPage(PAGE_SIZE, taskList.nextPageToken, "More tasks", (page) => taskList.append(page));
  }).finally(() => (more.disabled = false));
}

async function loadPage(size: number, token: string, what: string, use: (page: TaskPage) => void) {
  const epoch = listEpoch;
  const { ok, body, status } = await api(pageQuery(size, token));
  if (epoch !== listEpoch) return;
  if (!ok) return setRecentStatus(`${what} could not be loaded: ${errorText(body, status)}`, true);
  try {
    use(parseTaskPage(body));
  } catch (error) {
    return setRecentStatus(`${what} could not be read: ${error}`, true);
  }
  setRecentStatus("");
  renderRecent();
}

function setRecentStatus(text: string, isError = false) {
  const status = $("recent-status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function renderRecent() {
  const tunnel = tunnelTasks();
  // The entries are made anew: keep the keyboard's place on the one it was on.
  const focused = document.activeElement?.closest<HTMLElement>("#recent-list li")?.dataset.taskId;
  $("recent-list").replaceChildren(...taskList.tasks.map((summary) => renderListedTask(summary.taskId)!));
  if (focused) document.querySelector<HTMLElement>(`#recent-list li[data-task-id="${CSS.escape(focused)}"] button`)?.focus();
  ($("recent-more") as HTMLButtonElement).hidden = !taskList.hasMore;
  $("recent-empty").hidden = !(taskList.loaded && taskList.tasks.length === 0 && tunnel.length === 0);
  $("tunnel-recent").hidden = tunnel.length === 0;
  $("tunnel-list").replaceChildren(...tunnel.map(renderTunnelTask));
}

/** One entry of the edge's list: title, state, cost and when it was created; a click opens it. */
function renderListedTask(taskId: string): HTMLElement | undefined {
  const summary = taskList.get(taskId);
  if (!summary) return undefined;
  const entry = describeTask(summary, seen.get(taskId));
  const item = element("li", "task");
  item.dataset.taskId = entry.taskId;
  item.dataset.state = entry.state;
  if (current?.taskId === entry.taskId) item.setAttribute("aria-current", "true");
  const button = element("button", "link task-title", entry.title) as HTMLButtonElement;
  button.type = "button";
  button.title = entry.repository;
  button.addEventListener("click", () => void openListed(entry.taskId));
  const meta = element("div", "task-meta");
  const state = element("span", "badge task-state", entry.stateLabel);
  state.dataset.state = entry.state;
  meta.append(state);
  if (entry.cost) meta.append(" · ", element("span", "task-cost", entry.cost));
  if (entry.created) {
    const time = element("time", "task-created", entry.created);
    time.setAttribute("datetime", new Date(entry.createdMs).toISOString());
    meta.append(" · ", time);
  }
  item.append(button, meta);
  return item;
}

/** Shows the listed entry of `taskId` anew (its state or cost changed). */
function rerenderListedTask(taskId: string) {
  const old = document.querySelector(`#recent-list li[data-task-id="${CSS.escape(taskId)}"]`);
  const fresh = renderListedTask(taskId);
  if (!old || !fresh) return;
  const hadFocus = old.contains(document.activeElement);
  old.replaceWith(fresh);
  if (hadFocus) fresh.querySelector("button")?.focus();
}

function renderTunnelTask(task: TaskRef): HTMLElement {
  const item = element("li", "task");
  item.dataset.taskId = task.taskId;
  const button = element("button", "link", `${task.repositoryUrl} · ${new Date(task.startedAtMs).toLocaleString()}`) as HTMLButtonElement;
  button.type = "button";
  button.addEventListener("click", () => {
    opening++;
    localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
    openTask(task);
  });
  item.append(button, " ", element("span", "badge", "on your machine"));
  return item;
}

/** Opens a listed task's timeline, whichever browser started it: a new session on the task
 * (from the edge's archive once the task ended), then the usual connection. */
async function openListed(taskId: string) {
  const mine = ++opening;
  setRecentStatus("Opening the task…");
  const { ok, body, status } = await api("/api/container/ws-ticket", { method: "POST", body: JSON.stringify({ taskId }) });
  if (mine !== opening) return; // another task was opened or started meanwhile
  if (!ok) return setRecentStatus(`The task could not be opened: ${errorText(body, status)}`, true);
  setRecentStatus("");
  const summary = taskList.get(taskId);
  const createdMs = summary ? describeTask(summary).createdMs : 0;
  const task: TaskRef = { mode: "container", taskId: body.taskId, sessionId: body.sessionId, repositoryUrl: summary?.repositoryUrl ?? "", startedAtMs: createdMs };
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  openTask(task, body.websocketUrl);
  $("task").scrollIntoView({ block: "start" });
}

/** The shown task ended: the list is loaded again unless it already says so. The edge archives
 * the end just after the stream ends, so an answer still showing it running is asked again. */
async function refreshAfterEnd(taskId: string) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const listed = taskList.get(taskId);
    if (listed && isFinal(stateName(listed.state))) return;
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    if (current?.taskId !== taskId) return;
    await refreshRecent();
    if (!taskList.get(taskId)) return; // not listed (yet): nothing to bring up to date
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
  timeline = new Timeline();
  $("timeline").replaceChildren();
  $("task").hidden = false;
  for (const item of document.querySelectorAll<HTMLElement>("#recent-list li")) {
    if (item.dataset.taskId === task.taskId) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
  $("task-id").textContent = task.taskId;
  ($("cancel") as HTMLButtonElement).disabled = false;
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
    for (const entry of timeline.entries.slice(before)) list.append(renderEntry(entry));
  } else if (before > 0 && timeline.entries[before - 1] !== lastBefore) {
    // A new git progress line replaces the previous one in place.
    list.lastElementChild?.replaceWith(renderEntry(timeline.entries[before - 1]));
  }
  if (event.payload.case === "toolFinished") refreshToolOutput(event.payload.value.toolId);
  renderSummary();
  noteSeen();
  if (timeline.ended && !wasEnded) {
    ($("cancel") as HTMLButtonElement).disabled = true;
    window.clearInterval(clock);
    void refreshBalance();
    if (current && current.mode !== "tunnel") void refreshAfterEnd(current.taskId);
  }
}

/** Keeps what the timeline shows of the task for its list entry (the list's own summary of a
 * running task lags), and shows it there when it changed. */
function noteSeen() {
  if (!current || current.mode === "tunnel") return;
  const now: Seen = { state: timeline.state, costUsd: timeline.usage.costUsd };
  const before = seen.get(current.taskId);
  if (before?.state === now.state && before.costUsd === now.costUsd) return;
  seen.set(current.taskId, now);
  rerenderListedTask(current.taskId);
}

const STATE_LABELS: Record<string, string> = {
  PENDING: "Starting",
  CLONING: "Cloning the repository",
  RUNNING: "The agent is working",
  SUCCEEDED: "Finished",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
};

function renderSummary() {
  const elapsed = timeline.startedAtMs ? ((timeline.ended ? timeline.lastEventMs() : Date.now()) - timeline.startedAtMs) / 1000 : 0;
  $("state").textContent = `${STATE_LABELS[timeline.state] ?? timeline.state} · ${elapsed.toFixed(1)} s`;
  $("state").dataset.state = timeline.state;
  const u = timeline.usage;
  $("usage").textContent = `${u.inputTokens} in / ${u.outputTokens} out tokens · ${formatCost(u.costUsd)}`;
}

function element(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderEntry(entry: Entry): HTMLElement {
  const item = element("li", `entry ${entry.kind}`);
  item.dataset.seq = String(entry.seq);
  switch (entry.kind) {
    case "state":
      item.append(element("span", "label", STATE_LABELS[entry.state] ?? entry.state));
      if (entry.reason) item.append(element("span", "reason", ` — ${entry.reason}`));
      break;
    case "git":
      item.append(element("span", "label", `git: ${entry.message}`));
      break;
    case "ready":
      item.append(element("span", "label", `Checked out ${entry.commit.slice(0, 12)}`));
      break;
    case "agent":
      item.append(element("span", "label", `Agent started (${entry.model})`));
      break;
    case "text": {
      const body = element("div", "markdown");
      body.innerHTML = renderMarkdown(entry.text); // markdown-it with raw HTML disabled
      item.append(body);
      break;
    }
    case "tool": {
      item.dataset.toolId = entry.toolId;
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.append(element("span", "tool-name", entry.name), element("code", "tool-input", entry.summary));
      details.append(summary, element("pre", "tool-output", entry.output ?? "(running…)"));
      item.append(details);
      if (entry.isError) item.classList.add("is-error");
      break;
    }
    case "diff": {
      const { filesChanged, insertions, deletions } = entry;
      const files = `${filesChanged} file${filesChanged === 1 ? "" : "s"}`;
      item.append(element("strong", "label", filesChanged === 0 ? "No files changed" : `Changed ${files} (+${insertions} −${deletions})`));
      const list = element("ul", "diff-files");
      for (const file of entry.files) {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        const path = file.oldPath && file.oldPath !== file.path ? `${file.oldPath} → ${file.path}` : file.path;
        summary.append(element("span", `file-status ${file.status}`, file.status), element("code", "file-path", path), element("span", "file-counts", file.binary ? "binary" : `+${file.insertions} −${file.deletions}`));
        details.append(summary, element("pre", "patch", file.patch || "(too large to show here)"));
        const li = document.createElement("li");
        li.append(details);
        list.append(li);
      }
      item.append(list);
      if (entry.truncated) item.append(element("p", "help", "Only part of the diff is shown; the whole diff is kept with the task."));
      break;
    }
    case "delivered":
      item.append(
        element("span", "label", entry.step === "committed" ? `Committed ${entry.commit.slice(0, 12)} on branch ` : "Pushed branch "),
        element("code", "branch", entry.branch),
        element("span", "label", entry.step === "pushed" ? ` to ${entry.remoteUrl}` : ""),
      );
      break;
    case "finished": {
      item.classList.add(`final-${entry.state.toLowerCase()}`);
      item.append(element("strong", "label", `${STATE_LABELS[entry.state] ?? entry.state} in ${(entry.durationMs / 1000).toFixed(1)} s, ${entry.turns} turns`));
      if (entry.error) item.append(element("p", "error", entry.error));
      // The result usually repeats the agent's last message, already on the timeline.
      const lastText = [...timeline.entries].reverse().find((e) => e.kind === "text");
      if (entry.result && !(lastText?.kind === "text" && lastText.text.trim() === entry.result.trim())) {
        const result = element("div", "markdown result");
        result.innerHTML = renderMarkdown(entry.result);
        item.append(result);
      }
      break;
    }
  }
  return item;
}

function refreshToolOutput(toolId: string) {
  const entry = timeline.entries.find((e) => e.kind === "tool" && e.toolId === toolId);
  const item = document.querySelector<HTMLElement>(`li.tool[data-tool-id="${CSS.escape(toolId)}"]`);
  if (!entry || entry.kind !== "tool" || !item) return;
  item.querySelector(".tool-output")!.textContent = entry.output ?? "";
  item.classList.toggle("is-error", Boolean(entry.isError));
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
  $("recent-more").addEventListener("click", () => void moreRecent());
  $("signout").addEventListener("click", async () => {
    connection?.close();
    connection = undefined;
    current = undefined;
    opening++;
    await api("/api/auth/signout", { method: "POST" });
    localStorage.removeItem(CURRENT_KEY);
    // The next user must not see this one's list, nor a load of it still on its way.
    listEpoch++;
    taskList.clear();
    seen.clear();
    $("task").hidden = true;
    renderRecent();
    show("signin");
  });
  // For tests and the curious: drop the socket as a network failure would.
  (window as unknown as { autopilot: object }).autopilot = { dropSocket: () => connection?.drop() };
  const { ok, body } = await api("/api/auth/me");
  if (ok) await signedIn(body.userId);
  else show("signin");
}

void main();
