// GitHub on the page, where this deployment has a GitHub App: the "Sign in with GitHub" button,
// the account's connection in the header (connect it to an API-token account, or disconnect it),
// the repository picker (a list of what the user's GitHub account reaches, offered as the
// Repository URL is typed), the composer's "Open a pull request" choice, and the open task's pull
// request: its link, or GitHub's words with a way to try again. DOM glue around the edge's routes
// (/api/auth/providers, /api/github, /api/github/repositories, POST /api/tasks/{id}/pull-request);
// what a pull request line says is pullRequestLine, pure and unit-tested.

import { api, errorText } from "./api.js";
import { $ } from "./dom.js";

/** A task's pull request as the edge reports it (proto3 JSON; default values left out). */
export interface PullRequestJson {
  number?: number;
  url?: string;
  draft?: boolean;
  error?: string;
  adopted?: boolean;
}

/** What the open task's pull request line shows: a link, or why there is none. */
export type PullRequestLine = { kind: "link"; text: string; url: string } | { kind: "refused"; text: string };

/** The line for `pull`: "Pull request #7 (draft)" linking to it, or GitHub's refusal in its words. */
export function pullRequestLine(pull: PullRequestJson): PullRequestLine {
  if (pull.number && pull.url) {
    const draft = pull.draft ? " (draft)" : "";
    const adopted = pull.adopted ? " · commented on" : "";
    return { kind: "link", text: `Pull request #${pull.number}${draft}${adopted}`, url: pull.url };
  }
  return { kind: "refused", text: `No pull request: ${pull.error || "it was not opened"}` };
}

/** Whether this deployment signs people in with GitHub. */
let available = false;

/** Asks the edge whether GitHub is set up; shows the sign-in button if it is. */
export async function initGitHub(): Promise<void> {
  const { ok, body } = await api("/api/auth/providers");
  available = ok && body.github === true;
  const button = $("github-signin") as HTMLAnchorElement;
  button.hidden = !available;
  button.href = signInPath();
  $("github-signin-or").hidden = !available;
}

/** Where the GitHub sign-in starts, coming back to the address shown now. */
function signInPath(): string {
  return `/auth/github?returnTo=${encodeURIComponent(location.pathname)}`;
}

/** After sign-in: the header says whether GitHub is connected, the composer offers pull
 * requests and the repositories GitHub reaches. */
export async function showGitHubConnection(): Promise<void> {
  const line = $("github-account");
  line.hidden = !available;
  $("pull-request-choice").hidden = true;
  if (!available) return;
  const { ok, body } = await api("/api/github");
  const connected = ok && body.connected === true;
  ($("github-connect") as HTMLAnchorElement).href = signInPath();
  $("github-connect").hidden = connected;
  $("github-disconnect").hidden = !connected;
  $("github-login").textContent = connected ? `GitHub: ${body.login}` : "";
  $("pull-request-choice").hidden = !connected;
  if (connected) await offerRepositories();
}

/** Fills the Repository URL's suggestions with the first page of what GitHub reaches. */
async function offerRepositories(): Promise<void> {
  const { ok, body } = await api("/api/github/repositories");
  if (!ok) return;
  const options = (body.repositories ?? []).map((repository: { fullName: string; cloneUrl: string; private: boolean }) => {
    const option = document.createElement("option");
    option.value = repository.cloneUrl;
    option.label = `${repository.fullName}${repository.private ? " (private)" : ""}`;
    return option;
  });
  $("github-repositories").replaceChildren(...options);
}

/** Disconnects GitHub (the edge revokes the token), then shows it. */
export async function disconnectGitHub(): Promise<void> {
  const { ok, body, status } = await api("/api/github", { method: "DELETE" });
  if (!ok) $("github-login").textContent = errorText(body, status);
  await showGitHubConnection();
}

/** Whether the composer asks for a pull request. */
export function pullRequestAsked(): boolean {
  return !$("pull-request-choice").hidden && ($("open-pull-request") as HTMLInputElement).checked;
}

/** Shows `pull` (the open task's, or none) in the task's heading; "Try again" asks the edge to
 * open it, and shows the answer. */
export function showPullRequest(taskId: string, pull: PullRequestJson | undefined): void {
  const box = $("task-pull-request");
  box.hidden = !pull;
  if (!pull) return;
  const line = pullRequestLine(pull);
  const link = $("task-pull-request-link") as HTMLAnchorElement;
  const refused = $("task-pull-request-refused");
  link.hidden = line.kind !== "link";
  refused.hidden = line.kind !== "refused";
  $("task-pull-request-retry").hidden = line.kind !== "refused";
  if (line.kind === "link") {
    link.textContent = line.text;
    link.href = line.url;
  } else {
    refused.textContent = line.text;
  }
  $("task-pull-request-retry").onclick = async () => {
    refused.textContent = "Opening the pull request…";
    const { ok, body, status } = await api(`/api/tasks/${encodeURIComponent(taskId)}/pull-request`, { method: "POST" });
    showPullRequest(taskId, ok ? body : { error: errorText(body, status) });
  };
}

/** The ended task's pull request under its heading, once the edge has opened it (while it is
 * `stillShown`). */
export async function showPullRequestOnceOpened(taskId: string, stillShown: () => boolean): Promise<void> {
  const pull = await awaitPullRequest(taskId, stillShown);
  if (pull && stillShown()) showPullRequest(taskId, pull);
}

/** The ended task's pull request, asked of the edge until it is recorded (the edge opens it just
 * after the task's end) if the task asked for one; answers it, or undefined. */
export async function awaitPullRequest(taskId: string, stillShown: () => boolean): Promise<PullRequestJson | undefined> {
  for (let attempt = 0; attempt < 6 && stillShown(); attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    const { ok, body } = await api(`/api/container/status?taskId=${encodeURIComponent(taskId)}`);
    if (!ok) return undefined;
    const pull = body.task?.delivery?.pullRequest as PullRequestJson | undefined;
    if (pull) return pull;
    if (!body.task?.deliveryOptions?.pullRequest?.open) return undefined;
  }
  return undefined;
}
