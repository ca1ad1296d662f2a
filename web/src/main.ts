// The page: sign in, start a task, watch its timeline live, cancel it, come back to it later.
// DOM glue only; the logic lives in validate.ts, timeline.ts, connection.ts and markdown.ts.

import type { Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { TaskConnection, type LinkState } from "./connection.js";
import { renderMarkdown } from "./markdown.js";
import { Timeline, type Entry } from "./timeline.js";
import { fieldOfServiceError, validateStartForm, type StartForm } from "./validate.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const RECENT_KEY = "autopilot.recent";
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
let clock: number | undefined;
let tunnelPoll: number | undefined;

async function api(path: string, init?: RequestInit): Promise<{ ok: boolean; status: number; body: any }> {
  const reply = await fetch(path, init);
  const body = await reply.json().catch(() => ({}));
  return { ok: reply.ok, status: reply.status, body };
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
  renderRecent();
  const current = localStorage.getItem(CURRENT_KEY);
  if (current) openTask(JSON.parse(current) as TaskRef);
}

async function signIn(event: SubmitEvent) {
  event.preventDefault();
  const token = ($("token") as HTMLInputElement).value.trim();
  const { ok, body, status } = await api("/api/auth/signin", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token }),
  });
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
  // The previous task's timeline gives way at once, so nothing stale is mistaken for the new one.
  connection?.close();
  connection = undefined;
  $("task").hidden = true;
  $("timeline").replaceChildren();
  const mode = selectedMode();
  setStatus(mode === "tunnel" ? "Starting on your machine…" : "Starting the container…");
  const { ok, body, status } = await api(`/api/${mode}/start`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
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
  remember(task);
  openTask(task, body.websocketUrl);
}

function remember(task: TaskRef) {
  const recent = recentTasks().filter((t) => t.taskId !== task.taskId);
  recent.unshift(task);
  localStorage.setItem(RECENT_KEY, JSON.stringify(recent.slice(0, 20)));
  localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
  renderRecent();
}

function recentTasks(): TaskRef[] {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]") as TaskRef[];
  } catch {
    return [];
  }
}

async function renderRecent() {
  const list = $("recent-list");
  list.replaceChildren();
  const recent = recentTasks();
  $("recent-empty").hidden = recent.length > 0;
  for (const task of recent) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = `${task.repositoryUrl} · ${new Date(task.startedAtMs).toLocaleString()}`;
    button.addEventListener("click", () => {
      localStorage.setItem(CURRENT_KEY, JSON.stringify(task));
      openTask(task);
    });
    const state = document.createElement("span");
    state.className = "badge";
    item.append(button, " ", state);
    list.append(item);
    if (task.mode === "tunnel") {
      state.textContent = "on your machine";
      continue;
    }
    api(`/api/container/status?taskId=${encodeURIComponent(task.taskId)}`).then(({ ok, body }) => {
      state.textContent = ok ? String(body.task?.state ?? "").replace("TASK_STATE_", "") : "gone";
    });
  }
}

function setStatus(text: string, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function openTask(task: TaskRef, websocketUrl?: string) {
  connection?.close();
  timeline = new Timeline();
  $("timeline").replaceChildren();
  $("task").hidden = false;
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
  if (timeline.ended) {
    ($("cancel") as HTMLButtonElement).disabled = true;
    window.clearInterval(clock);
    void refreshBalance();
    void renderRecent();
  }
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
  $("usage").textContent = `${u.inputTokens} in / ${u.outputTokens} out tokens · $${u.costUsd.toFixed(4)}`;
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
  $("signout").addEventListener("click", async () => {
    connection?.close();
    await api("/api/auth/signout", { method: "POST" });
    localStorage.removeItem(CURRENT_KEY);
    show("signin");
  });
  // For tests and the curious: drop the socket as a network failure would.
  (window as unknown as { autopilot: object }).autopilot = { dropSocket: () => connection?.drop() };
  const { ok, body } = await api("/api/auth/me");
  if (ok) await signedIn(body.userId);
  else show("signin");
}

void main();
