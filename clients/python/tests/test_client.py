"""The convenience layer against the real agent-service over native gRPC: run a task and follow
it, resume from a seq, status, cancel, list the tasks a page at a time, and the errors a program
sees for bad input."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from autopilot import AutopilotError, Client, Event, TaskState, describe


def kinds(events: list[Event]) -> list[str]:
    return [str(e.WhichOneof("payload")) for e in events]


def test_run_follows_a_task_to_its_end(client: Client, repository_url: str, main_commit: str) -> None:
    events = list(client.run(repository_url, "Run two steps SCENARIO:many-tools:2", max_turns=10))

    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "dense seqs from 1"
    assert len({e.task_id for e in events}) == 1
    assert kinds(events)[0] == "state_changed"
    tools = [e.tool_started for e in events if e.WhichOneof("payload") == "tool_started"]
    assert [t.name for t in tools] == ["Bash", "Bash"]
    assert '"echo step 1"' in tools[0].input_json
    outputs = [e.tool_finished.output.strip() for e in events if e.WhichOneof("payload") == "tool_finished"]
    assert outputs == ["step 1", "step 2"]
    finished = events[-1]
    assert finished.WhichOneof("payload") == "task_finished"
    assert finished.task_finished.state == TaskState.TASK_STATE_SUCCEEDED
    assert finished.task_finished.result == "Ran 2 steps."
    assert describe(finished) == f"#{finished.seq} finished SUCCEEDED: Ran 2 steps."

    task = client.status(events[0].task_id)
    assert task.state == TaskState.TASK_STATE_SUCCEEDED
    assert task.last_seq == len(events)
    assert task.commit == main_commit
    assert task.options.max_turns == 10
    # Without an id, Status answers the latest task.
    assert client.status().task_id == task.task_id


def test_events_resume_from_a_seq(client: Client, repository_url: str) -> None:
    started = client.start(repository_url, "List the files SCENARIO:list-files", git_ref="main")
    assert started.state == TaskState.TASK_STATE_PENDING
    everything = list(client.events(started.task_id))
    resume_at = len(everything) - 2
    rest = list(client.events(started.task_id, from_seq=resume_at))
    assert [e.seq for e in rest] == [resume_at, resume_at + 1, resume_at + 2]
    assert rest == everything[resume_at - 1 :], "the replay is the same events, each once"
    # Past the end of a finished task: nothing, at once.
    assert list(client.events(started.task_id, from_seq=len(everything) + 1)) == []


def test_cancel_stops_a_running_task(client: Client, repository_url: str) -> None:
    started = client.start(repository_url, "Work slowly SCENARIO:slow-tools:40", timeout=timedelta(minutes=5))
    seen: list[Event] = []
    for event in client.events(started.task_id):
        seen.append(event)
        if event.WhichOneof("payload") == "tool_started":
            break
    cancelled = client.cancel(started.task_id, reason="changed my mind")
    assert cancelled.task_id == started.task_id
    assert cancelled.state == TaskState.TASK_STATE_CANCELLED

    rest = list(client.events(started.task_id, from_seq=seen[-1].seq + 1))
    assert rest[-1].task_finished.state == TaskState.TASK_STATE_CANCELLED
    assert rest[-1].task_finished.error == "cancelled: changed my mind"
    assert client.status(started.task_id).error == "cancelled: changed my mind"
    # Cancelling again changes nothing and answers the final state.
    assert client.cancel(started.task_id).state == TaskState.TASK_STATE_CANCELLED


def test_list_tasks_pages_newest_first(client: Client, repository_url: str) -> None:
    events = list(client.run(repository_url, "List me\nSCENARIO:answer"))
    task_id = events[0].task_id

    newest = client.list_tasks(page_size=1)
    assert [t.task_id for t in newest.tasks] == [task_id]
    summary = newest.tasks[0]
    assert (summary.state, summary.title, summary.repository_url) == (
        TaskState.TASK_STATE_SUCCEEDED,
        "List me",
        repository_url,
    )
    assert summary.HasField("create_time") and summary.HasField("end_time")

    # Every page in turn: each task once, newest first, and no token after the last page.
    listed, token = [], ""
    while True:
        page = client.list_tasks(page_size=2, page_token=token)
        listed.extend(page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert listed[0].task_id == task_id
    assert len({t.task_id for t in listed}) == len(listed)
    times = [(t.create_time.seconds, t.create_time.nanos) for t in listed]
    assert times == sorted(times, reverse=True)
    assert [t.task_id for t in client.list_tasks(page_size=100).tasks] == [t.task_id for t in listed]

    for bad in ({"page_size": 101}, {"page_token": "xyz"}):
        with pytest.raises(AutopilotError) as refused:
            client.list_tasks(**bad)  # type: ignore[arg-type]
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert next(iter(bad)) in refused.value.message


def test_bad_input_raises_with_the_status_and_the_field(client: Client, repository_url: str) -> None:
    with pytest.raises(AutopilotError) as refused:
        client.start(repository_url, "")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt" in refused.value.message

    with pytest.raises(AutopilotError) as refused:
        client.start(repository_url, "hi", max_turns=5000)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_turns" in refused.value.message or "maxTurns" in refused.value.message

    with pytest.raises(AutopilotError) as missing:
        client.status("no-such-task")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(AutopilotError) as missing:
        list(client.events("no-such-task"))
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_an_unreachable_service_is_an_error_not_a_hang() -> None:
    with Client("127.0.0.1:1") as nowhere, pytest.raises(AutopilotError) as failed:
        nowhere.status()
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
