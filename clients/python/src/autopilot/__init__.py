"""A Python client of the autopilot agent-service (contract `autopilot.v1`).

Layout:
- `client`: `Client`, the typed convenience layer over the generated stubs (start a task and
  iterate its events, resume from a seq, status, cancel, list the tasks) and `AutopilotError`.
- `describe`: one line of text per event, and a task's pull request in words, for people.
- `cli`: the `autopilot` console command.
- `v1`: the stubs generated from proto/ when the package was built (`autopilot_pb2`,
  `autopilot_pb2_grpc`), for everything the convenience layer leaves out.
"""

from autopilot.client import DEFAULT_ADDRESS, AutopilotError, Client
from autopilot.describe import describe, pull_request_text, state_name
from autopilot.v1.autopilot_pb2 import (
    CancelResponse,
    Event,
    ListTasksResponse,
    StartResponse,
    Task,
    TaskState,
    TaskSummary,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "AutopilotError",
    "CancelResponse",
    "Client",
    "Event",
    "ListTasksResponse",
    "StartResponse",
    "Task",
    "TaskState",
    "TaskSummary",
    "describe",
    "pull_request_text",
    "state_name",
]
