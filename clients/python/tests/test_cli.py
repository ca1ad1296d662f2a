"""The `autopilot` console command against the real agent-service: events are printed as they
arrive (not when the task ends), and status / events / cancel / list do what their help says.
What status prints of a task's pull request (which the edge records) is checked from a Task alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autopilot import Client, Task, TaskState
from autopilot.cli import _status_lines
from autopilot.v1 import autopilot_pb2 as pb

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")


def autopilot(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AUTOPILOT, "--address", address, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_start_prints_events_as_they_arrive(client: Client, address: str, repository_url: str) -> None:
    command = subprocess.Popen(
        [AUTOPILOT, "start", repository_url, "Work slowly SCENARIO:slow-tools:4"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AUTOPILOT_ADDRESS": address},
    )
    assert command.stdout is not None
    first = command.stdout.readline()
    assert first.startswith("task "), first
    task_id = first.split()[1]
    for line in command.stdout:
        if " tool Bash: sleep 0.5; echo step 1" in line:
            break
    # The first tool call is on screen while the task is still running.
    assert client.status(task_id).state == TaskState.TASK_STATE_RUNNING
    rest = command.stdout.read().splitlines()
    assert command.wait(timeout=60) == 0
    assert rest[-1].endswith("finished SUCCEEDED: Ran 4 slow steps."), rest


def test_status_events_and_cancel(address: str, repository_url: str, main_commit: str) -> None:
    started = autopilot(address, "--json", "start", "--detach", repository_url, "Hello")
    assert started.returncode == 0, started.stderr
    task_id = json.loads(started.stdout)["taskId"]

    followed = autopilot(address, "events", task_id)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines[0].startswith("#1 state "), lines
    assert lines[-1].endswith("finished SUCCEEDED: All done: nothing needed changing."), lines

    resumed = autopilot(address, "--json", "events", task_id, "--from-seq", "2")
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert [int(e["seq"]) for e in events] == list(range(2, len(lines) + 1))

    status = autopilot(address, "status", task_id)
    assert status.returncode == 0
    assert f"task {task_id}: SUCCEEDED" in status.stdout
    assert f"commit {main_commit}" in status.stdout

    cancelled = autopilot(address, "cancel", task_id)
    assert cancelled.stdout.strip() == f"task {task_id}: SUCCEEDED", "an ended task keeps its state"

    again = autopilot(address, "start", repository_url, "Hello again\nand more")
    assert again.returncode == 0, again.stderr
    listed = autopilot(address, "list", "--page-size", "1")
    assert listed.returncode == 0, listed.stderr
    newest, more = listed.stdout.splitlines()
    assert newest.startswith(again.stdout.split()[1] + "  SUCCEEDED  "), newest
    assert newest.endswith("Z  Hello again"), newest
    assert more.startswith("more: autopilot list --page-token "), more
    following = autopilot(address, "--json", "list", "--page-size", "1", "--page-token", more.split()[-1])
    page = json.loads(following.stdout)
    assert [t["taskId"] for t in page["tasks"]] == [task_id], page
    assert page["tasks"][0]["title"] == "Hello" and page["tasks"][0]["state"] == "TASK_STATE_SUCCEEDED"


def test_refusals_exit_2_with_the_reason(address: str, repository_url: str) -> None:
    refused = autopilot(address, "start", repository_url, "")
    assert refused.returncode == 2
    assert refused.stderr.startswith("autopilot: INVALID_ARGUMENT:") and "prompt" in refused.stderr
    missing = autopilot(address, "status", "no-such-task")
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr
    too_many = autopilot(address, "list", "--page-size", "101")
    assert too_many.returncode == 2 and "INVALID_ARGUMENT" in too_many.stderr and "page_size" in too_many.stderr


def test_a_task_that_fails_exits_1(address: str, repository_url: str) -> None:
    failed = autopilot(address, "start", repository_url, "Fail SCENARIO:api-error")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert " finished FAILED: " in failed.stdout.splitlines()[-1]


def test_a_follow_up_continues_an_ended_task(client: Client, address: str, repository_url: str) -> None:
    parent = list(client.run(repository_url, "Write some notes\nSCENARIO:write-file"))
    parent_id = parent[0].task_id

    followed = autopilot(address, "start", "--follow-up", parent_id, "Now extend them\nSCENARIO:read-and-extend")
    assert followed.returncode == 0, followed.stderr
    task = client.status(followed.stdout.splitlines()[0].split()[1])
    assert task.parent_task_id == parent_id
    assert "hello from the agent" in task.result, "it read the file its parent wrote"
    assert task.delivery.branch == client.status(parent_id).delivery.branch, "on its parent's branch"
    assert task.delivery.base_commit == client.status(parent_id).delivery.commit, "on top of its parent's commit"

    refused = autopilot(address, "start", "Hello")
    assert refused.returncode == 2 and "needs a repository_url" in refused.stderr


def status_of_pull_request(pull: pb.PullRequest | None) -> list[str]:
    """What `autopilot status` prints of a succeeded task that pushed its branch, with `pull`."""
    delivery = pb.Delivery(branch="autopilot/t-1", commit="c0ffee", pushed=True, pull_request=pull)
    task = Task(
        task_id="t-1",
        state=TaskState.TASK_STATE_SUCCEEDED,
        repository_url="https://github.com/o/r.git",
        last_seq=15,
        result="Fixed it.",
        delivery=delivery,
    )
    return _status_lines(task)


def test_status_shows_the_pull_request_opened() -> None:
    draft = pb.PullRequest(number=7, url="https://github.com/o/r/pull/7", draft=True)
    assert status_of_pull_request(draft)[-1] == "pull request #7 (draft) https://github.com/o/r/pull/7"
    ready = pb.PullRequest(number=8, url="https://github.com/o/r/pull/8")
    assert status_of_pull_request(ready)[-1] == "pull request #8 https://github.com/o/r/pull/8"
    adopted = pb.PullRequest(number=3, url="https://github.com/o/r/pull/3", draft=True, adopted=True)
    assert status_of_pull_request(adopted)[-1] == "pull request #3 (draft, commented on) https://github.com/o/r/pull/3"


def test_status_shows_why_the_pull_request_was_not_opened() -> None:
    refused = pb.PullRequest(error="Validation Failed: No commits between main and autopilot/t-1")
    lines = status_of_pull_request(refused)
    assert lines[-1] == "pull request not opened: Validation Failed: No commits between main and autopilot/t-1"
    assert lines[-2] == "result Fixed it.", "the task still succeeded"


def test_status_has_no_pull_request_line_when_none_was_opened_or_asked() -> None:
    lines = status_of_pull_request(None)
    assert not [line for line in lines if line.startswith("pull request")], lines
