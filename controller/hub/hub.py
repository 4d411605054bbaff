"""The registry of connected agents and everything the controller does with them.

* one AgentSession per node; a newer stream replaces an older one (its epoch is higher)
* desired-state pushes: the first change goes out at once, later ones within ``coalesce`` are merged,
  none is dropped (a dirty set, drained by one task)
* liveness: heartbeats update last_seen; a node is offline after missed heartbeats plus a grace period
* commands: request/response with a correlation id and a timeout
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller import __version__
from controller.errors import GatewayTimeout, Unavailable
from controller.hub.session import AgentSession
from controller.models import FleetSetting, Node, utcnow
from controller.services.desired_state import (FLEET_AGENT_SETTINGS_KEY, NodeUser, effective_agent_settings,
                                               render_desired_state, v2ray_desired, wireguard_desired)
from controller.services.logs import LogStore
from controller.services.node_state import NodeStateWriter
from controller.services.telemetry import TelemetryIngest
from controller.settings import Settings
from protos import agent_pb2

log = logging.getLogger("vpnfleet.hub")


class Hub:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], state: NodeStateWriter,
                 ingest: TelemetryIngest, logs: LogStore, coalesce: float = 0.2) -> None:
        self.settings = settings
        self._sessions = sessions
        self.state = state
        self.ingest = ingest
        self.logs = logs
        self._coalesce = coalesce
        self.sessions: dict[str, AgentSession] = {}
        self._last_seen: dict[str, float] = {}
        self._online: set[str] = set()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self.handshakes = asyncio.Semaphore(settings.max_concurrent_handshakes)
        #: called with the node uuid after an agent's Hello was accepted (the node service moves
        #: creating/starting nodes to running)
        self.on_connected: Callable[[str], Awaitable[None]] | None = None
        #: V2Ray users every node carries besides the subscribers (the local relay's own credential)
        self.extra_v2ray_users: list[NodeUser] = []
        self.messages_received = 0
        self.shutting_down = False
        ingest.on_store_failed = self._resync_telemetry

    # -- sessions -----------------------------------------------------------------------------------------
    async def open_session(self, node: Node, hello: agent_pb2.Hello, cert_fingerprint: str | None = None) -> AgentSession:
        """Accept a Hello: bump the node's session epoch durably and replace any older stream.

        ``cert_fingerprint``: the certificate the stream was admitted with. It is checked again once the
        session is registered, so a revocation or re-enrollment committed meanwhile (whose disconnect found
        no session yet) still ends this stream.
        """
        async with self._sessions() as s:
            row = await s.get(Node, node.id)
            row.session_epoch += 1
            row.agent_version = hello.agent_version[:32]
            row.hostname = hello.hostname[:255]
            row.boot_id = hello.boot_id[:64]
            row.capabilities = list(hello.capabilities)[:32]
            row.online = True
            row.last_seen_at = utcnow()
            row.applied_revision = hello.applied_revision
            epoch = row.session_epoch
            stored_seq = row.telemetry_seq
            await s.commit()
        old = self.sessions.get(node.uuid)
        if old is not None:
            old.close("replaced by a newer stream")
        session = AgentSession(node.uuid, epoch, hello)
        self.sessions[node.uuid] = session
        self._last_seen[node.uuid] = time.monotonic()
        self._online.add(node.uuid)
        acked_seq = self.ingest.begin_session(node.uuid, epoch, stored_seq)
        session.send(agent_pb2.ControllerMessage(welcome=agent_pb2.Welcome(
            session_epoch=epoch,
            heartbeat_interval_seconds=self.settings.heartbeat_interval,
            telemetry_acked_seq=acked_seq,
            controller_version=__version__,
        )))
        # Read only now that the session is registered: a push that ran before this (say, for a change
        # committed while the Hello was being accepted) skipped the node, so a revision committed before this
        # read is pushed here, and one committed after it finds the session.
        async with self._sessions() as s:
            desired, current_cert, revoked_at = (await s.execute(
                select(Node.desired_revision, Node.cert_fingerprint, Node.cert_revoked_at)
                .where(Node.id == node.id))).one()
        if cert_fingerprint is not None and (revoked_at is not None or current_cert != cert_fingerprint):
            session.close("certificate revoked or replaced while the stream was accepted", refuse=revoked_at is not None)
        if desired is not None and hello.applied_revision < desired:
            self.mark_dirty([node.uuid])
        # The node's row changed outside the writer: publish through it so SSE readers see it online.
        self.state.update(node.uuid, online=True)
        if self.on_connected is not None:
            await self.on_connected(node.uuid)
        log.info("agent %s connected (epoch %d, version %s)", node.uuid, epoch, hello.agent_version)
        return session

    def _resync_telemetry(self, nodes: set[str]) -> None:
        """Storing these nodes' telemetry failed: end their streams, so that they reconnect and re-send from
        the sequence the database really holds (see TelemetryIngest)."""
        for node in nodes:
            session = self.sessions.get(node)
            if session is not None:
                self.close_session(session, "telemetry could not be stored; the agent re-sends it on a new stream")

    def close_session(self, session: AgentSession, reason: str) -> None:
        session.close(reason)
        if self.sessions.get(session.node_uuid) is session:
            del self.sessions[session.node_uuid]
        log.info("agent %s stream ended: %s", session.node_uuid, reason)

    def disconnect(self, node_uuid: str, reason: str, refuse: bool = False) -> None:
        """Drop a node's stream (node deleted, re-enrolled, or its certificate revoked: ``refuse``, so the
        stream ends with PERMISSION_DENIED)."""
        session = self.sessions.pop(node_uuid, None)
        if session is not None:
            session.close(reason, refuse=refuse)
        self._online.discard(node_uuid)
        self._last_seen.pop(node_uuid, None)
        self.state.update(node_uuid, online=False)

    def is_current(self, session: AgentSession) -> bool:
        return self.sessions.get(session.node_uuid) is session

    # -- messages from agents -----------------------------------------------------------------------------
    async def handle(self, session: AgentSession, msg: agent_pb2.AgentMessage) -> None:
        if not self.is_current(session):
            return  # a stale stream must not overwrite what a newer one reported
        self.messages_received += 1
        node = session.node_uuid
        self._last_seen[node] = time.monotonic()
        kind = msg.WhichOneof("kind")
        if kind == "heartbeat":
            self.state.update(node, last_seen_at=utcnow())
            if node not in self._online:
                self._online.add(node)
                self.state.update(node, online=True)
        elif kind == "applied":
            report = msg.applied
            session.applied_revision = report.revision
            self.state.update(node, applied_revision=report.revision, last_seen_at=utcnow(), component_status=[
                {"name": c.name, "state": agent_pb2.ComponentStatus.State.Name(c.state).lower(),
                 "error": c.error or None, "config_hash": c.config_hash}
                for c in report.components
            ])
        elif kind == "telemetry":
            await self.ingest.submit(node, session.epoch, msg.telemetry, lambda seq, s=session: self._ack(s, seq))
        elif kind == "logs":
            self.logs.add(node, msg.logs.lines, msg.logs.dropped)
        elif kind == "command_result":
            session.resolve(msg.command_result)
        elif kind == "hello":
            log.warning("agent %s sent a second hello; ignored", node)

    def _ack(self, session: AgentSession, seq: int) -> None:
        if not session.closed.is_set():
            session.send(agent_pb2.ControllerMessage(telemetry_ack=agent_pb2.TelemetryAck(acked_seq=seq)))

    # -- desired state --------------------------------------------------------------------------------------
    def mark_dirty(self, node_uuids: Iterable[str]) -> None:
        """Schedule a desired-state push to these nodes (only connected ones are sent anything)."""
        self._dirty.update(node_uuids)
        self._dirty_event.set()

    def mark_all_dirty(self) -> None:
        self.mark_dirty(list(self.sessions))

    async def run_pusher(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            batch, self._dirty = self._dirty, set()
            try:
                await self._push(batch)
            except Exception:
                log.exception("pushing desired state failed; will retry")
                self.mark_dirty(batch)
            await asyncio.sleep(self._coalesce)  # changes arriving now are merged into one push

    async def _push(self, node_uuids: set[str]) -> None:
        connected = [u for u in node_uuids if u in self.sessions]
        if not connected:
            return
        async with self._sessions() as s:
            fleet = await self.fleet_agent_settings(s)
            for i in range(0, len(connected), 500):
                chunk = connected[i:i + 500]
                rows = (await s.scalars(select(Node).where(Node.uuid.in_(chunk)))).all()
                wireguard = await wireguard_desired(s, list(rows), self.settings)
                v2ray = (await v2ray_desired(s, list(rows), self.settings, self.extra_v2ray_users)
                         if self.settings.v2ray_enabled else {})
                for node in rows:
                    session = self.sessions.get(node.uuid)
                    if session is None or node.is_deleted:
                        continue
                    settings = effective_agent_settings(self.default_agent_settings(), fleet, node.agent_settings or {})
                    state = render_desired_state(node, settings, wireguard.get(node.uuid), v2ray.get(node.uuid))
                    session.send(agent_pb2.ControllerMessage(desired_state=state))

    def default_agent_settings(self) -> dict[str, Any]:
        # allow_private_targets comes only from the config file (diagnostics.allow_private_targets): the REST
        # API's validate_agent_settings refuses it, so no fleet or node override can set it.
        return {"metrics_interval_seconds": self.settings.metrics_interval, "log_level": "info",
                "allow_private_targets": self.settings.diagnostics_allow_private_targets}

    @staticmethod
    async def fleet_agent_settings(s: AsyncSession) -> dict[str, Any]:
        row = await s.get(FleetSetting, FLEET_AGENT_SETTINGS_KEY)
        return dict(row.value) if row else {}

    # -- commands ---------------------------------------------------------------------------------------------
    async def call(self, node_uuid: str, command: agent_pb2.Command, timeout: float = 10.0) -> agent_pb2.CommandResult:
        session = self.sessions.get(node_uuid)
        if session is None:
            raise Unavailable(f"node {node_uuid} has no connected agent")
        try:
            result = await session.call(command, timeout)
        except asyncio.TimeoutError:
            raise GatewayTimeout(f"node {node_uuid} did not answer within {timeout:g}s") from None
        except ConnectionError as exc:
            raise Unavailable(f"node {node_uuid}: {exc}") from None
        return result

    # -- liveness ---------------------------------------------------------------------------------------------
    def offline_after(self) -> float:
        return self.settings.heartbeat_interval * self.settings.offline_after_missed + self.settings.offline_grace

    async def run_liveness(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            limit = time.monotonic() - self.offline_after()
            for node in [n for n in self._online if self._last_seen.get(n, 0) < limit]:
                self._online.discard(node)
                session = self.sessions.get(node)
                if session is not None:
                    self.close_session(session, "missed heartbeats")
                self.state.update(node, online=False)
                log.info("node %s offline (no heartbeat for %.0fs)", node, self.offline_after())

    async def shutdown(self, reason: str) -> None:
        """Tell every agent the controller is going away (they keep serving and reconnect later)."""
        self.shutting_down = True
        for session in list(self.sessions.values()):
            session.send(agent_pb2.ControllerMessage(shutdown=agent_pb2.Shutdown(reason=reason)))
        await asyncio.sleep(0.2)  # let writers flush the Shutdown message
        for session in list(self.sessions.values()):
            session.close(reason)

    async def prime(self) -> None:
        """After a controller restart: nodes that were online get one offline window to reconnect,
        instead of all flapping offline at once."""
        async with self._sessions() as s:
            online = (await s.scalars(select(Node.uuid).where(Node.online.is_(True)))).all()
        now = time.monotonic()
        for node in online:
            self._online.add(node)
            self._last_seen[node] = now
