// How one timeline entry looks: the DOM of each kind of step (state, git, tool call and its
// output, the agent's text as markdown, the diff, the delivery, the final result). The folding of
// events into entries is timeline.ts's; this file only draws them.

import { element } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import type { Entry, Timeline } from "./timeline.js";

/** The timeline's words for each state. */
export const STATE_LABELS: Record<string, string> = {
  PENDING: "Starting",
  CLONING: "Cloning the repository",
  RUNNING: "The agent is working",
  SUCCEEDED: "Finished",
  FAILED: "Failed",
  CANCELLED: "Cancelled",
  TIMED_OUT: "Timed out",
};

/** The list item of `entry`, on the timeline `timeline` (the final entry looks back at it). */
export function renderEntry(entry: Entry, timeline: Timeline): HTMLElement {
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

/** Shows a tool call's output under its call, once it came. */
export function refreshToolOutput(toolId: string, timeline: Timeline) {
  const entry = timeline.entries.find((e) => e.kind === "tool" && e.toolId === toolId);
  const item = document.querySelector<HTMLElement>(`li.tool[data-tool-id="${CSS.escape(toolId)}"]`);
  if (!entry || entry.kind !== "tool" || !item) return;
  item.querySelector(".tool-output")!.textContent = entry.output ?? "";
  item.classList.toggle("is-error", Boolean(entry.isError));
}
