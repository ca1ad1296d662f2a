"""The typed convenience layer: one `Client` method per thing a program does with a task.

It stays thin on purpose: requests and replies are the generated messages, so nothing here can
drift from the contract; what it adds is keyword arguments with the contract's defaults, one
error type carrying the gRPC status, and `run` (start, then follow to the end).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from types import TracebackType

import grpc
from google.protobuf.duration_pb2 import Duration

from autopilot.v1 import autopilot_pb2 as pb
from autopilot.v1 import autopilot_pb2_grpc

#: Where `make dev` runs the agent-service; `AUTOPILOT_ADDRESS` overrides it.
DEFAULT_ADDRESS = "127.0.0.1:8080"


class AutopilotError(Exception):
    """A call the service refused or could not answer, with its gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> AutopilotError:
        # Every RpcError a call raises is also a grpc.Call, which carries the status.
        call = error if isinstance(error, grpc.Call) else None
        code = call.code() if call else grpc.StatusCode.UNKNOWN
        return cls(code, (call.details() if call else None) or str(error))


class Client:
    """A connection to one agent-service over native gRPC (HTTP/2).

    `address` is `host:port`; without one, `AUTOPILOT_ADDRESS` or 127.0.0.1:8080. Plaintext unless
    `credentials` (e.g. `grpc.ssl_channel_credentials()`) are given. Use as a context manager, or
    call `close`.
    """

    def __init__(self, address: str | None = None, *, credentials: grpc.ChannelCredentials | None = None) -> None:
        self.address = address or os.environ.get("AUTOPILOT_ADDRESS") or DEFAULT_ADDRESS
        if credentials is None:
            self._channel = grpc.insecure_channel(self.address)
        else:
            self._channel = grpc.secure_channel(self.address, credentials)
        # grpcio-tools emits the service stub without types; the typed methods below cover it.
        self._stub = autopilot_pb2_grpc.AutopilotStub(self._channel)  # type: ignore[no-untyped-call]

    def start(
        self,
        repository_url: str,
        prompt: str,
        *,
        git_ref: str = "",
        model: str = "",
        max_turns: int = 0,
        max_budget_usd: float = 0.0,
        timeout: timedelta | None = None,
        parent_task_id: str = "",
    ) -> pb.StartResponse:
        """Starts a task; answers its id and state at once. Zero/empty options mean the defaults.

        With `parent_task_id`, the task is a follow-up turn of that ended task: it continues its
        conversation and workspace on its branch, and `repository_url` may be empty (the
        parent's)."""
        options = pb.AgentOptions(model=model, max_turns=max_turns, max_budget_usd=max_budget_usd)
        if timeout is not None:
            duration = Duration()
            duration.FromTimedelta(timeout)
            options.timeout.CopyFrom(duration)
        request = pb.StartRequest(
            repository_url=repository_url,
            git_ref=git_ref,
            prompt=prompt,
            options=options,
            parent_task_id=parent_task_id,
        )
        try:
            reply: pb.StartResponse = self._stub.Start(request)
            return reply
        except grpc.RpcError as error:
            raise AutopilotError.from_rpc(error) from None

    def status(self, task_id: str = "") -> pb.Task:
        """The task's snapshot; without an id, the latest running task or else the latest one."""
        try:
            reply: pb.StatusResponse = self._stub.Status(pb.StatusRequest(task_id=task_id))
            return reply.task
        except grpc.RpcError as error:
            raise AutopilotError.from_rpc(error) from None

    def events(self, task_id: str = "", from_seq: int = 1) -> Iterator[pb.Event]:
        """The task's events from `from_seq` (to resume: the last seq seen + 1), replayed and then
        live, as they arrive; the iteration ends after the final `task_finished` event."""
        stream = self._stub.StreamEvents(pb.StreamEventsRequest(task_id=task_id, from_seq=from_seq))
        try:
            for reply in stream:
                yield reply.event
        except grpc.RpcError as error:
            raise AutopilotError.from_rpc(error) from None
        finally:
            stream.cancel()

    def run(
        self,
        repository_url: str,
        prompt: str,
        *,
        git_ref: str = "",
        model: str = "",
        max_turns: int = 0,
        max_budget_usd: float = 0.0,
        timeout: timedelta | None = None,
        parent_task_id: str = "",
    ) -> Iterator[pb.Event]:
        """Starts a task (options as for `start`, a follow-up with `parent_task_id`) and iterates
        its events to the end."""
        started = self.start(
            repository_url,
            prompt,
            git_ref=git_ref,
            model=model,
            max_turns=max_turns,
            max_budget_usd=max_budget_usd,
            timeout=timeout,
            parent_task_id=parent_task_id,
        )
        return self.events(started.task_id)

    def cancel(self, task_id: str = "", reason: str = "") -> pb.CancelResponse:
        """Stops the task (without an id, the running one); answers the state it ended in."""
        try:
            reply: pb.CancelResponse = self._stub.Cancel(pb.CancelRequest(task_id=task_id, reason=reason))
            return reply
        except grpc.RpcError as error:
            raise AutopilotError.from_rpc(error) from None

    def list_tasks(self, page_size: int = 0, page_token: str = "") -> pb.ListTasksResponse:
        """A page of the service's tasks, newest first: a summary of each (id, state, repository,
        title, times, usage, delivered branch and commit). `page_size` 1..=100, 0 for 20; pass the
        reply's `next_page_token` as `page_token` for the next page (empty on the last page)."""
        try:
            request = pb.ListTasksRequest(page_size=page_size, page_token=page_token)
            reply: pb.ListTasksResponse = self._stub.ListTasks(request)
            return reply
        except grpc.RpcError as error:
            raise AutopilotError.from_rpc(error) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
