"""The `autopilot` console command: start a task, follow its events as they arrive, ask its
status, cancel it, list the service's tasks. Exit codes: 0 done (a followed task SUCCEEDED), 1 a followed task ended
otherwise, 2 the service refused the call or could not be reached."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta

from google.protobuf import json_format
from google.protobuf.message import Message

from autopilot.client import DEFAULT_ADDRESS, AutopilotError, Client
from autopilot.describe import describe, pull_request_text, state_name
from autopilot.v1 import autopilot_pb2 as pb


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autopilot", description="Run a coding agent on a repository.")
    parser.add_argument(
        "--address",
        help=f"the agent-service, host:port (default: $AUTOPILOT_ADDRESS or {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--json", action="store_true", help="print proto3 JSON, one message per line")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser(
        "start",
        help="start a task and follow its events",
        usage="%(prog)s [options] repository_url prompt | %(prog)s --follow-up TASK_ID [options] prompt",
    )
    start.add_argument("repository_url", nargs="?", default="", help="(a follow-up's is its parent's)")
    start.add_argument("prompt")
    start.add_argument(
        "--follow-up",
        metavar="TASK_ID",
        default="",
        help="continue this ended task's conversation and workspace, on its branch",
    )
    start.add_argument("--ref", default="", help="branch, tag or commit (default: the remote's default)")
    start.add_argument("--model", default="")
    start.add_argument("--max-turns", type=int, default=0)
    start.add_argument("--max-budget-usd", type=float, default=0.0)
    start.add_argument("--timeout", type=float, help="seconds (default: the service's)")
    start.add_argument("--detach", action="store_true", help="print the task id and return at once")

    status = commands.add_parser("status", help="a task's state (default: the current or latest task)")
    status.add_argument("task_id", nargs="?", default="")

    events = commands.add_parser("events", help="print a task's events, replayed then live, to its end")
    events.add_argument("task_id", nargs="?", default="")
    events.add_argument("--from-seq", type=int, default=1, help="resume here (the last seq seen + 1)")

    cancel = commands.add_parser("cancel", help="stop a task (default: the running one)")
    cancel.add_argument("task_id", nargs="?", default="")
    cancel.add_argument("--reason", default="")

    listing = commands.add_parser("list", help="the service's tasks, newest first, a page at a time")
    listing.add_argument("--page-size", type=int, default=0, help="1 to 100 (default: 20)")
    listing.add_argument("--page-token", default="", help="where to continue: the token a previous page printed")
    return parser


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, indent=None)


def _follow(events: Iterable[pb.Event], as_json: bool) -> int:
    final = pb.TASK_STATE_UNSPECIFIED
    for event in events:
        print(_json(event) if as_json else describe(event), flush=True)
        if event.WhichOneof("payload") == "task_finished":
            final = event.task_finished.state
    return 0 if final == pb.TASK_STATE_SUCCEEDED else 1


def _status_lines(task: pb.Task) -> list[str]:
    lines = [f"task {task.task_id}: {state_name(task.state)}", f"repository {task.repository_url}"]
    if task.commit:
        lines.append(f"commit {task.commit}")
    lines.append(f"events {task.last_seq}")
    if task.result:
        lines.append(f"result {task.result}")
    if task.delivery.HasField("pull_request"):
        lines.append(f"pull request {pull_request_text(task.delivery.pull_request)}")
    if task.error:
        lines.append(f"error {task.error}")
    return lines


def _list_lines(page: pb.ListTasksResponse) -> list[str]:
    """One line per task (id, state, when it was created, title), then how to get the next page."""
    lines = []
    for task in page.tasks:
        created = task.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if task.HasField("create_time") else "-"
        lines.append(f"{task.task_id}  {state_name(task.state):<9}  {created}  {task.title}")
    if page.next_page_token:
        lines.append(f"more: autopilot list --page-token {page.next_page_token}")
    return lines


def run(argv: Sequence[str] | None = None) -> int:
    """The command with `argv`; answers the exit code."""
    args = _parser().parse_args(argv)
    with Client(args.address) as client:
        try:
            if args.command == "start":
                if not args.repository_url and not args.follow_up:
                    print("autopilot: start needs a repository_url (or --follow-up TASK_ID)", file=sys.stderr)
                    return 2
                started = client.start(
                    args.repository_url,
                    args.prompt,
                    git_ref=args.ref,
                    model=args.model,
                    max_turns=args.max_turns,
                    max_budget_usd=args.max_budget_usd,
                    timeout=None if args.timeout is None else timedelta(seconds=args.timeout),
                    parent_task_id=args.follow_up,
                )
                print(_json(started) if args.json else f"task {started.task_id}", flush=True)
                return 0 if args.detach else _follow(client.events(started.task_id), args.json)
            if args.command == "events":
                return _follow(client.events(args.task_id, args.from_seq), args.json)
            if args.command == "status":
                task = client.status(args.task_id)
                print(_json(task) if args.json else "\n".join(_status_lines(task)))
                return 0
            if args.command == "list":
                page = client.list_tasks(args.page_size, args.page_token)
                output = _json(page) if args.json else "\n".join(_list_lines(page))
                if output:
                    print(output)
                return 0
            cancelled = client.cancel(args.task_id, args.reason)
            print(_json(cancelled) if args.json else f"task {cancelled.task_id}: {state_name(cancelled.state)}")
            return 0
        except AutopilotError as error:
            print(f"autopilot: {error}", file=sys.stderr)
            return 2


def main() -> None:
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        sys.exit(130)
