"""The agent's one loop: enroll, then hold the stream to the controller forever.

    startup:  re-apply the stored desired state (the node serves before any connection), start sampling
    enroll:   once, if state_dir holds no certificate
    renew:    before each connect and during a session, once less than a third of the certificate's life is
              left (Agent.Renew); a renewal ends the session and the next one connects at once with the new
              certificate. The identity is re-read from disk at each connect (`vpnfleet-agent --reenroll`).
    session:  Connect -> Hello -> Welcome -> concurrently { heartbeats, telemetry from the spool,
              log batches, applied reports, reading DesiredState / TelemetryAck / Command / Shutdown }
    loss:     backoff with full jitter, reconnect; only a refused certificate ends the loop

Everything the agent sends goes through one bounded queue that feeds the stream's request iterator.
Nothing that happens to the stream touches what was applied: the data plane never depends on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket
import time
from pathlib import Path
from typing import AsyncIterator

import grpc

import agent
from agent.backoff import Backoff, jittered
from agent.commands import CommandRunner
from agent.config import AgentConfig
from agent.drivers import build_components
from agent.identity import (
    CertificateRefused,
    Identity,
    RenewalRefused,
    cert_path,
    certificate_times,
    channel_options,
    ensure_identity,
    key_path,
    load_identity_when_settled,
    mtls_credentials,
    renew,
    renewal_due_at,
)
from agent.latest import Latest
from agent.logcontrol import LogControl
from agent.spool import Spool
from agent.state import AppliedStateStore, StateApplier
from agent.telemetry import MetricsLoop, Sampler
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

#: Messages waiting to be written to the stream; producers wait when it is full (backpressure).
OUTGOING_QUEUE_SIZE = 256
#: How long the controller may take to answer Hello with Welcome.
WELCOME_TIMEOUT_SECONDS = 20.0
#: Used if Welcome carries no heartbeat interval.
DEFAULT_HEARTBEAT_SECONDS = 15
#: Spooled telemetry batches read from disk per step while catching up.
TELEMETRY_READ_CHUNK = 100
#: Log lines per LogBatch, and how often a partial batch is flushed.
LOG_BATCH_LINES = 200
LOG_FLUSH_SECONDS = 0.5
#: Commands running at once; more are answered "busy" at once rather than piling up.
MAX_COMMANDS_IN_FLIGHT = 32
#: Status codes with which the controller refuses our certificate: retrying cannot help.
_REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
#: Longest sleep between two looks at the certificate's renewal time (the wall clock may jump meanwhile).
RENEW_CHECK_SECONDS = 3600.0
#: Why a session ended when it ended for a renewal (the next one starts at once).
RENEWED = "certificate renewed"

SPOOL_DIR = "spool"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

Outgoing = asyncio.Queue  # of agent_pb2.AgentMessage; None ends the request stream


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


async def _requests(outgoing: Outgoing) -> AsyncIterator[agent_pb2.AgentMessage]:
    """The stream's request iterator: whatever the session queues, in order."""
    while (message := await outgoing.get()) is not None:
        yield message


def _end_requests(outgoing: Outgoing) -> None:
    """Let the request iterator finish, so grpc's task consuming it ends instead of being left pending."""
    while not outgoing.empty():
        outgoing.get_nowait()
    outgoing.put_nowait(None)


class Engine:
    """Owns the agent's parts and runs the reconnect loop. Start with `await Engine(...).run()`."""

    def __init__(self, config: AgentConfig, logs: LogControl, backoff: Backoff | None = None) -> None:
        self.config = config
        self.logs = logs
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool = Spool(state_dir / SPOOL_DIR, config.spool_max_batches)
        self._spool_tail: Latest[int] = Latest()
        self.metrics = MetricsLoop(
            Sampler(), self.spool, config.metrics_interval_seconds, on_batch=lambda b: self._spool_tail.set(b.seq)
        )
        self.commands = CommandRunner(
            alias=config.node_name,
            log_level=lambda: logs.level,
            cert_path=str(cert_path(state_dir)),
            key_path=str(key_path(state_dir)),
        )
        components = build_components(
            config,
            self.metrics.set_interval,
            logs.set_level,
            log_push=logs.buffer.push,
            add_traffic_source=self.metrics.add_traffic_source,
            set_allow_private_targets=self.commands.set_allow_private_targets,
        )
        self.applier = StateApplier(components, AppliedStateStore(state_dir))
        self.backoff = backoff or Backoff(cap=config.reconnect_max_seconds)
        self._rng = random.Random()
        self._desired: Latest[agent_pb2.DesiredState] = Latest()
        self._reports: Latest[agent_pb2.AppliedReport] = Latest()
        self._healthy_since: float | None = None
        self._state_dir = state_dir

    # -- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled. Raises PermanentAuthError (EnrollmentRefused, CertificateRefused)."""
        report = await self.applier.load_and_apply()
        if report is not None:
            self._reports.set(report)
        background = [
            asyncio.create_task(self.metrics.run(), name="metrics"),
            asyncio.create_task(self._apply_desired(), name="apply"),
        ]
        try:
            identity = await ensure_identity(self.config, Backoff(cap=self.config.reconnect_max_seconds))
            log.info("agent %s starting as node %s", agent.__version__, identity.node_id)
            while True:
                # renewed, or replaced by `vpnfleet-agent --reenroll` (waiting for one in progress)
                identity = await asyncio.to_thread(load_identity_when_settled, self._state_dir) or identity
                identity = await self._renew_if_due(identity)
                try:
                    reason = await self._one_session(identity)
                except CertificateRefused:
                    stored = await asyncio.to_thread(load_identity_when_settled, self._state_dir)
                    if stored is None or stored.cert_pem == identity.cert_pem:
                        raise
                    # re-enrolled meanwhile: the refusal was for the certificate just replaced
                    reason = "the refused certificate was replaced on disk (re-enrolled)"
                lasted = time.monotonic() - self._healthy_since if self._healthy_since else 0.0
                self._healthy_since = None
                self.backoff.session_ended(lasted)
                if reason == RENEWED:
                    log.info("reconnecting to %s with the renewed certificate", self.config.grpc_addr)
                    continue
                delay = self.backoff.next_delay()
                log.warning("stream to %s ended (%s); reconnecting in %.1fs", self.config.grpc_addr, reason, delay)
                await asyncio.sleep(delay)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _one_session(self, identity: Identity) -> str:
        """Run one stream; return why it ended. Raises CertificateRefused for a permanent refusal."""
        try:
            return await self._session(identity)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _REFUSED:
                raise CertificateRefused(
                    f"controller refused this node's certificate: {exc.code().name}: {exc.details()}"
                ) from exc
            return f"{exc.code().name}: {exc.details()}"
        except TimeoutError:
            return "no Welcome from the controller"
        except ConnectionError as exc:
            return str(exc)
        except (asyncio.CancelledError, CertificateRefused):
            raise
        except Exception as exc:  # anything else is a lost session, not a reason to stop the agent
            log.exception("session failed")
            return f"{type(exc).__name__}: {exc}"

    async def _session(self, identity: Identity) -> str:
        """One stream, until it ends; returns why it ended cleanly (an error ending it is raised)."""
        outgoing: Outgoing = asyncio.Queue(maxsize=OUTGOING_QUEUE_SIZE)
        async with grpc.aio.secure_channel(
            self.config.grpc_addr, mtls_credentials(identity), options=channel_options(self.config)
        ) as channel:
            call = agent_pb2_grpc.AgentStub(channel).Connect(_requests(outgoing))
            commands: set[asyncio.Task] = set()
            try:
                outgoing.put_nowait(agent_pb2.AgentMessage(hello=self._hello(identity)))
                welcome = await self._await_welcome(call)
                self._healthy_since = time.monotonic()
                log.info(
                    "connected to %s (session epoch %d)", self.config.grpc_addr, welcome.session_epoch
                )
                await asyncio.to_thread(self.spool.ack, welcome.telemetry_acked_seq)
                heartbeat = welcome.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
                tasks = [
                    asyncio.create_task(self._read(call, outgoing, commands), name="read"),
                    asyncio.create_task(self._send_heartbeats(outgoing, heartbeat), name="heartbeat"),
                    asyncio.create_task(self._send_telemetry(outgoing), name="telemetry"),
                    asyncio.create_task(self._send_logs(outgoing), name="logs"),
                    asyncio.create_task(self._send_reports(outgoing), name="reports"),
                ]
                renewal = asyncio.create_task(self._renew_when_due(identity), name="renew")
                try:
                    done, _ = await asyncio.wait([*tasks, renewal], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (*tasks, renewal):
                        task.cancel()
                    await asyncio.gather(*tasks, renewal, return_exceptions=True)
                for task in done:
                    task.result()  # re-raise the error that ended the session
                return RENEWED if renewal in done else "closed by the controller"
            finally:
                for task in list(commands):
                    task.cancel()  # their results would have nowhere to go; the controller times out
                call.cancel()  # closes the stream on Shutdown too; the controller is going away anyway
                _end_requests(outgoing)

    async def _await_welcome(self, call: grpc.aio.StreamStreamCall) -> agent_pb2.Welcome:
        message = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_SECONDS)
        if message is grpc.aio.EOF:
            raise ConnectionError("stream closed before Welcome")
        if message.WhichOneof("kind") != "welcome":
            raise ConnectionError(f"expected Welcome, got {message.WhichOneof('kind')}")
        return message.welcome

    def _hello(self, identity: Identity) -> agent_pb2.Hello:
        return agent_pb2.Hello(
            node_id=identity.node_id,
            agent_version=agent.__version__,
            capabilities=[*self.applier.capabilities, *self.commands.capabilities],
            boot_id=read_boot_id(),
            applied_revision=self.applier.applied_revision,
            telemetry_seq=self.spool.last_seq,
            hostname=socket.gethostname(),
        )

    # -- certificate renewal ----------------------------------------------------------------------------

    async def _renew_if_due(self, identity: Identity) -> Identity:
        """Before connecting: renew if due. A failure keeps the current certificate (Connect decides)."""
        now = dt.datetime.now(dt.timezone.utc)
        if now < renewal_due_at(identity.cert_pem):
            return identity
        _, not_after = certificate_times(identity.cert_pem)
        if now >= not_after:
            log.error("this node's certificate expired at %s: the controller will refuse it; re-enroll the node "
                      "(vpnfleet-agent --reenroll)", not_after.isoformat())
            return identity
        try:
            return await renew(self.config, identity)
        except RenewalRefused as exc:
            log.warning("certificate renewal refused (%s); connecting with the current certificate", exc)
        except grpc.aio.AioRpcError as exc:
            log.warning("certificate renewal failed (%s); connecting with the current certificate", exc.code().name)
        except Exception:  # e.g. the state dir is not writable: keep serving with what we have
            log.exception("certificate renewal failed; connecting with the current certificate")
        return identity

    async def _renew_when_due(self, identity: Identity) -> None:
        """During a session: sleep until the renewal time, renew, and return (which ends the session, so the
        next one uses the new certificate; the data plane is untouched). Transient failures are retried; a
        refusal waits for the session to end (the controller cuts a revoked node's stream itself)."""
        due = renewal_due_at(identity.cert_pem)
        _, not_after = certificate_times(identity.cert_pem)
        while True:
            now = dt.datetime.now(dt.timezone.utc)
            if now < due:
                await asyncio.sleep(min((due - now).total_seconds(), RENEW_CHECK_SECONDS))
                continue
            try:
                await renew(self.config, identity)
                return
            except RenewalRefused as exc:
                log.warning("certificate renewal refused (%s); keeping the current certificate", exc)
                await asyncio.Event().wait()
            except grpc.aio.AioRpcError as exc:
                retry = max(1.0, min(300.0, (not_after - now).total_seconds() / 10))
                log.warning("certificate renewal failed (%s); retrying in %.0fs", exc.code().name, retry)
                await asyncio.sleep(retry)

    # -- session tasks ----------------------------------------------------------------------------------

    async def _read(self, call: grpc.aio.StreamStreamCall, outgoing: Outgoing, commands: set[asyncio.Task]) -> None:
        """Handle what the controller sends until the stream ends (raises) or it says Shutdown (returns)."""
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            kind = message.WhichOneof("kind")
            if kind == "desired_state":
                log.debug("desired state revision %d received", message.desired_state.revision)
                self._desired.set(message.desired_state)
            elif kind == "telemetry_ack":
                await asyncio.to_thread(self.spool.ack, message.telemetry_ack.acked_seq)
            elif kind == "command":
                self._start_command(message.command, outgoing, commands)
            elif kind == "shutdown":
                log.info("controller is shutting down (%s)", message.shutdown.reason or "no reason given")
                return
            else:
                log.debug("ignoring controller message of kind %s", kind)

    async def _send_heartbeats(self, outgoing: Outgoing, interval: float) -> None:
        while True:
            await asyncio.sleep(jittered(interval, self._rng))
            heartbeat = agent_pb2.Heartbeat(
                sent_at_ms=int(time.time() * 1000), applied_revision=self.applier.applied_revision
            )
            await outgoing.put(agent_pb2.AgentMessage(heartbeat=heartbeat))

    async def _send_telemetry(self, outgoing: Outgoing) -> None:
        """Everything in the spool, oldest first, then each new batch as it is spooled.

        Sent batches stay in the spool until acknowledged, so a lost stream loses none of them: the next
        session starts again from the oldest unacknowledged batch.
        """
        sent = 0
        while True:
            version = self._spool_tail.version  # read before the spool, so no new batch is missed
            batches = await asyncio.to_thread(self.spool.pending_after, sent, TELEMETRY_READ_CHUNK)
            for batch in batches:
                await outgoing.put(agent_pb2.AgentMessage(telemetry=batch))
                sent = batch.seq
            if len(batches) < TELEMETRY_READ_CHUNK:
                await self._spool_tail.wait_newer(version)

    async def _send_logs(self, outgoing: Outgoing) -> None:
        # Nothing in here may log: every line would become another line to send.
        while True:
            batch = self.logs.buffer.drain(LOG_BATCH_LINES)
            if batch is not None:
                await outgoing.put(agent_pb2.AgentMessage(logs=batch))
            if batch is None or len(batch.lines) < LOG_BATCH_LINES:
                await asyncio.sleep(LOG_FLUSH_SECONDS)

    async def _send_reports(self, outgoing: Outgoing) -> None:
        """The newest AppliedReport: at session start if there is one, then after every apply."""
        seen = 0
        while True:
            seen, report = await self._reports.wait_newer(seen)
            await outgoing.put(agent_pb2.AgentMessage(applied=report))

    def _start_command(self, command: agent_pb2.Command, outgoing: Outgoing, commands: set[asyncio.Task]) -> None:
        """Run each command in its own task so a slow one never holds up the stream."""

        async def run() -> None:
            if len(commands) > MAX_COMMANDS_IN_FLIGHT:
                result = agent_pb2.CommandResult(id=command.id, error="busy: too many commands in flight")
            else:
                result = await self.commands.run(command)
            await outgoing.put(agent_pb2.AgentMessage(command_result=result))

        task = asyncio.create_task(run(), name=f"command-{command.id}")
        commands.add(task)
        task.add_done_callback(commands.discard)

    # -- independent of the stream ----------------------------------------------------------------------

    async def _apply_desired(self) -> None:
        """Apply desired states one at a time, newest first; outlives any session.

        Runs apart from the stream so that losing the stream never interrupts an apply halfway. While the
        last apply failed in a way that may pass (see StateApplier.retry_delay), the same state is applied
        again after the applier's backoff, unless a newer one comes first: the controller resends only on a
        change or a reconnect, and a revision that blocks a subscriber must not wait for either.
        """
        seen = 0
        while True:
            try:
                seen, desired = await asyncio.wait_for(self._desired.wait_newer(seen), self.applier.retry_delay())
            except TimeoutError:
                desired = None
            try:
                if desired is None:
                    report = await self.applier.retry()
                    if report is None:
                        continue
                else:
                    report = await self.applier.apply(desired)
            except Exception:
                what = f"revision {desired.revision}" if desired is not None else "again"
                log.exception("applying desired state %s failed", what)
                continue
            # A stale revision changes nothing; re-send the current report so the controller sees why.
            report = report or self.applier.last_report or agent_pb2.AppliedReport(
                revision=self.applier.applied_revision
            )
            self._reports.set(report)
