"""One connected agent: its outgoing queue, its pending commands and its session epoch."""

from __future__ import annotations

import asyncio
import itertools
import time

from protos import agent_pb2

#: Messages queued for one agent before the session is considered stuck and closed (the agent reconnects).
OUTBOX_SIZE = 1024

_command_ids = itertools.count(1)


class AgentSession:
    def __init__(self, node_uuid: str, epoch: int, hello: agent_pb2.Hello) -> None:
        self.node_uuid = node_uuid
        self.epoch = epoch
        self.hello = hello
        self.applied_revision = hello.applied_revision
        self.outbox: asyncio.Queue[agent_pb2.ControllerMessage | None] = asyncio.Queue(OUTBOX_SIZE)
        self.pending: dict[str, asyncio.Future[agent_pb2.CommandResult]] = {}
        self.connected_at = time.monotonic()
        self.closed = asyncio.Event()
        self.close_reason = ""
        #: closed because the node's certificate no longer admits it (revoked): the stream ends with
        #: PERMISSION_DENIED, which the agent takes as final, instead of a plain end it would reconnect after
        self.refused = False

    def send(self, message: agent_pb2.ControllerMessage) -> bool:
        """Queue a message; a full queue means the agent stopped reading, so the session is closed."""
        if self.closed.is_set():
            return False
        try:
            self.outbox.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self.close("agent is not reading its stream")
            return False

    def close(self, reason: str, refuse: bool = False) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.refused = refuse
        self.closed.set()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"agent session closed: {reason}"))
        try:
            self.outbox.put_nowait(None)  # wakes the writer
        except asyncio.QueueFull:
            pass

    async def call(self, command: agent_pb2.Command, timeout: float) -> agent_pb2.CommandResult:
        """Send a command and wait for its result (correlated by id)."""
        command.id = f"{self.epoch}-{next(_command_ids)}"
        command.timeout_ms = int(timeout * 1000)
        fut: asyncio.Future[agent_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        self.pending[command.id] = fut
        try:
            if not self.send(agent_pb2.ControllerMessage(command=command)):
                raise ConnectionError("agent session closed")
            # a little slack over the agent's own timeout, so the agent's answer wins when it has one
            return await asyncio.wait_for(fut, timeout + 2.0)
        finally:
            self.pending.pop(command.id, None)

    def resolve(self, result: agent_pb2.CommandResult) -> None:
        fut = self.pending.get(result.id)
        if fut is not None and not fut.done():
            fut.set_result(result)
