// One line of text per event, and a task's pull request in words, for people: what the README
// example prints. Pure functions of the generated messages; the same format as the Python
// client's `describe` and `pull_request_text`.

import { TaskState, type Event, type PullRequest } from "./gen/autopilot/v1/autopilot_pb.js";

/** Longest text shown for a payload before it is cut with an ellipsis. */
const MAX_TEXT = 200;

/** `TaskState.SUCCEEDED` -> `SUCCEEDED`. */
export function stateName(state: TaskState): string {
  return TaskState[state] ?? `STATE_${state}`;
}

function short(text: string): string {
  const oneLine = text.split(/\s+/).filter(Boolean).join(" ");
  return oneLine.length <= MAX_TEXT ? oneLine : `${oneLine.slice(0, MAX_TEXT - 1)}…`;
}

/** The command of a shell call, the path of a file tool, else the input as given. */
function toolSummary(inputJson: string): string {
  try {
    const value: unknown = JSON.parse(inputJson);
    if (value && typeof value === "object") {
      for (const key of ["command", "file_path", "path", "pattern", "url"]) {
        const field = (value as Record<string, unknown>)[key];
        if (typeof field === "string") return field;
      }
    }
  } catch {
    // Not JSON: shown as given.
  }
  return inputJson;
}

/** `#<seq> <kind> <details>`, e.g. `#7 tool Bash: ls -1` or `#12 finished SUCCEEDED: ...`. */
export function describe(event: Event): string {
  const head = `#${event.seq}`;
  const payload = event.payload;
  switch (payload.case) {
    case "stateChanged": {
      const reason = payload.value.reason ? ` (${payload.value.reason})` : "";
      return `${head} state ${stateName(payload.value.to)}${reason}`;
    }
    case "gitProgress":
      return payload.value.phase
        ? `${head} clone ${payload.value.phase} ${payload.value.percent}%`
        : `${head} clone ${short(payload.value.message)}`;
    case "repositoryReady":
      return `${head} cloned ${payload.value.commit.slice(0, 12)}`;
    case "agentStarted":
      return `${head} agent started (${payload.value.model || "default model"})`;
    case "agentText":
      return `${head} text ${short(payload.value.text)}`;
    case "toolStarted":
      return `${head} tool ${payload.value.name}: ${short(toolSummary(payload.value.inputJson))}`;
    case "toolFinished":
      return `${head} ${payload.value.isError ? "tool error" : "tool output"} ${short(payload.value.output)}`;
    case "usageUpdate": {
      const usage = payload.value.usage;
      const cost = (usage?.costUsd ?? 0).toFixed(4);
      return `${head} usage ${usage?.inputTokens ?? 0n} in / ${usage?.outputTokens ?? 0n} out, $${cost}`;
    }
    case "taskFinished": {
      const done = payload.value;
      const detail = done.state === TaskState.SUCCEEDED ? done.result : done.error;
      return `${head} finished ${stateName(done.state)}: ${short(detail)}`;
    }
    default:
      return `${head} (an event this client does not know: update it)`;
  }
}

/**
 * `#7 (draft) https://github.com/...` once opened (`commented on` when it was already open and
 * adopted), else `not opened: <GitHub's words>`.
 */
export function pullRequestText(pull: PullRequest): string {
  if (!pull.number) return pull.error ? `not opened: ${pull.error}` : "not opened";
  const marks = [...(pull.draft ? ["draft"] : []), ...(pull.adopted ? ["commented on"] : [])];
  const text = `#${pull.number}${marks.length ? ` (${marks.join(", ")})` : ""}`;
  return pull.url ? `${text} ${pull.url}` : text;
}
