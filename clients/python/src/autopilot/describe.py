"""One line of text per event, and a task's pull request in words, for people: what the console
command prints, and what the README example prints. Pure functions of the generated messages."""

from __future__ import annotations

import json

from autopilot.v1 import autopilot_pb2 as pb

#: Longest text shown for a payload before it is cut with an ellipsis.
MAX_TEXT = 200


def state_name(state: int) -> str:
    """`TASK_STATE_SUCCEEDED` -> `SUCCEEDED`."""
    return pb.TaskState.Name(state).removeprefix("TASK_STATE_")


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= MAX_TEXT else one_line[: MAX_TEXT - 1] + "…"


def describe(event: pb.Event) -> str:
    """`#<seq> <kind> <details>`, e.g. `#7 tool Bash: ls -1` or `#12 finished SUCCEEDED: ...`."""
    kind = event.WhichOneof("payload")
    head = f"#{event.seq}"
    if kind == "state_changed":
        change = event.state_changed
        reason = f" ({change.reason})" if change.reason else ""
        return f"{head} state {state_name(change.to)}{reason}"
    if kind == "git_progress":
        progress = event.git_progress
        if progress.phase:
            return f"{head} clone {progress.phase} {progress.percent}%"
        return f"{head} clone {_short(progress.message)}"
    if kind == "repository_ready":
        return f"{head} cloned {event.repository_ready.commit[:12]}"
    if kind == "agent_started":
        started = event.agent_started
        return f"{head} agent started ({started.model or 'default model'})"
    if kind == "agent_text":
        return f"{head} text {_short(event.agent_text.text)}"
    if kind == "tool_started":
        tool = event.tool_started
        return f"{head} tool {tool.name}: {_short(_tool_summary(tool.input_json))}"
    if kind == "tool_finished":
        done = event.tool_finished
        return f"{head} {'tool error' if done.is_error else 'tool output'} {_short(done.output)}"
    if kind == "usage_update":
        usage = event.usage_update.usage
        return f"{head} usage {usage.input_tokens} in / {usage.output_tokens} out, ${usage.cost_usd:.4f}"
    if kind == "task_finished":
        finished = event.task_finished
        detail = finished.result if finished.state == pb.TASK_STATE_SUCCEEDED else finished.error
        return f"{head} finished {state_name(finished.state)}: {_short(detail)}"
    return f"{head} (an event this client does not know: update it)"


def pull_request_text(pull: pb.PullRequest) -> str:
    """`#7 (draft) https://github.com/...` once opened (`commented on` when it was already open and
    adopted), else `not opened: <GitHub's words>`."""
    if not pull.number:
        return f"not opened: {pull.error}" if pull.error else "not opened"
    marks = (["draft"] if pull.draft else []) + (["commented on"] if pull.adopted else [])
    text = f"#{pull.number}" + (f" ({', '.join(marks)})" if marks else "")
    return f"{text} {pull.url}" if pull.url else text


def _tool_summary(input_json: str) -> str:
    """The command of a shell call, the path of a file tool, else the input as given."""
    try:
        value = json.loads(input_json)
    except ValueError:
        return input_json
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "url"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return input_json
