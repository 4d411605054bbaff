"""Component "v2ray": the proxy core's inbounds and users (DesiredState.v2ray), on V2Ray or Xray.

Cores: V2RayConfig.core picks V2Ray 4.x ("v2ray", also "") or Xray-core ("xray"); both take the same config
and API, and everything that differs (binary, command line, gRPC service and type names, which profiles it
serves) is data in agent.v2ray.core, so the driver has one code path. "V2Ray" below means either core.
Binaries: $VPNFLEET_V2RAY (default `v2ray` on PATH) and $VPNFLEET_XRAY (default `xray`); the component's
capabilities list the cores whose binary is there. The core is part of the structure: switching cores is one
restart into the other binary, rolled back to the last good config (and its core) if it does not come up.
V2Ray runs as the unprivileged data-plane user (agent.dataplane_user; as the agent's own user when the
agent is not root), which must be able to read the TLS certificate and key files of *-ws-tls inbounds
(operators give them group vpnfleet-dp, mode 0640; checked before every `-test`, naming the file).
State lives in state_dir/v2ray/ (root, group of the data-plane user, 0750):

    config.json       what V2Ray runs (its -config file), rewritten after every user change (0640: V2Ray reads it)
    last_good.json    the last configuration that was applied successfully (what a restart goes back to)
    candidate.json    a new structure while `v2ray -test` checks it
    process.json      the V2Ray this driver started: pid, start time, boot id, core, binary (agent.v2ray.process)
    traffic.json      per-user traffic read from V2Ray and not yet in a spooled batch (agent.v2ray.traffic; 0600)
    access.log, error.log   V2Ray's logs (plus its stdout/stderr), owned by V2Ray's user, streamed as live
                      logs, kept bounded. The access log is off unless the desired state asks for it, and
                      subscribers' source addresses in it are masked unless it says to show them.

Every config carries the egress policy (agent.egress, rendered by agent.v2ray.config): subscribers reach the
internet, not the node, its API or anything private behind it.

Apply: a change of structure (inbounds, log level), or no V2Ray running, renders the whole config to
candidate.json and runs `v2ray -test` on it; only if V2Ray accepts it is the traffic counted so far read,
the old V2Ray stopped and the new one started (own session: it outlives the agent) and awaited until its
API answers and its inbound ports listen. If it does not come up, its counters are read, it is stopped, the
last good config is started again and the apply fails. A structure that failed is remembered: one V2Ray
rejects is not tried again while it stays desired, one that did not start only after a backoff (2 s doubling
to 60 s), since every try drops every subscriber's connections. Meanwhile, and in the apply that failed, the
users of the desired state are applied to the running inbounds and the apply fails naming the structure
error: a revision that blocks a subscriber must not wait for a port to come free.
A change of users only goes through V2Ray's HandlerService, without a restart: removed and rotated users are
removed, added and rotated ones added (with the inbound's VLESS flow: Vision on REALITY inbounds), at most
API_CONCURRENCY calls at a time; if a call fails, what this apply changed is undone and the apply fails. On success config.json is rewritten with the full user list, so
a V2Ray restarted from disk has the right users. What V2Ray runs is the truth: once its calls succeeded the
new users are what runs, even if config.json cannot be written; that write fails the apply and is done again
by the retry (agent.state) or the next apply.

A new agent process adopts the V2Ray that an earlier one started (same pid, no restart) when the process
record, /proc (config argument and binary), the core config.json names and the API all agree; the apply then
changes only what differs from the config it runs.
Background: a supervisor restarts a V2Ray that died (from the last good config, backoff 1 s doubling up
to 30 s) and every reconcile_seconds repairs drift (users missing from V2Ray are added again, users V2Ray
has but should not are removed); a tailer streams V2Ray's log files as live log lines.
Telemetry: take_traffic()/give_back()/spooled() make this a TrafficSource (per-user deltas, none lost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Awaitable, Callable

from agent import dataplane_user
from agent import egress
from agent.atomicfile import fsync_dir, write_atomic
from agent.logbuffer import LOG_LEVELS
from agent.state import Component
from agent.v2ray import config as v2config
from agent.v2ray import process
from agent.v2ray.api import ApiError, V2RayApi
from agent.v2ray.core import CORES, DEFAULT_CORE, Core
from agent.v2ray.logtail import LogTailer, mask_source_addresses, parse_line
from agent.v2ray.process import ConfigRejected, ProcessRecord
from agent.v2ray.spec import (Inbound, UserPlan, UserStep, V2RaySpec, email_key, plan_users, redact_credentials,
                              spec_from_proto)
from agent.v2ray.traffic import USER_PREFIX, UsageMeter, parse_user_stats
from protos import agent_pb2

log = logging.getLogger(__name__)

BINARY_ENV = DEFAULT_CORE.binary_env  # V2Ray's; each core names its own (agent.v2ray.core)
STATE_SUBDIR = "v2ray"
CONFIG_FILE = "config.json"
LAST_GOOD_FILE = "last_good.json"
CANDIDATE_FILE = "candidate.json"
RECORD_FILE = "process.json"
TRAFFIC_FILE = "traffic.json"
ACCESS_LOG = "access.log"
ERROR_LOG = "error.log"

#: HandlerService calls in flight at once (one channel): fast for 10,000 users, gentle on V2Ray.
API_CONCURRENCY = 64
START_TIMEOUT_SECONDS = 15.0
RESTART_BASE_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
#: A V2Ray that ran this long before dying is restarted without delay (the backoff starts over).
STABLE_SECONDS = 60.0
LOG_POLL_SECONDS = 0.5
#: User events logged one by one up to this many per change; beyond it, one summary line.
USER_EVENTS_DETAILED = 20
#: Emails removed earlier that drift repair keeps checking (oldest forgotten first).
MAX_REMOVED_TRACKED = 10_000
#: How long a V2Ray API that does not answer GetSysStats is given before it counts as wedged.
API_ALIVE_TIMEOUT_SECONDS = 2.0
#: A structure that did not start is tried again after this long, doubling per failure up to the max.
STRUCTURE_RETRY_BASE_SECONDS = 2.0
STRUCTURE_RETRY_MAX_SECONDS = 60.0

#: What Xray's access log lines start with (V2Ray's start with the source address itself).
XRAY_SOURCE_PREFIX = "from "

LogPush = Callable[[str, str, str], None]


@dataclasses.dataclass(frozen=True)
class StructureFailure:
    """A structure (V2RaySpec.structure) that could not replace the running V2Ray, and when to try it again."""

    structure: tuple
    error: str
    #: `v2ray -test` refused it: deterministic, not tried again while it stays desired.
    rejected: bool
    #: Failed starts in a row (the exponent of the backoff).
    failures: int = 1
    #: time.monotonic() before which it is not tried again while a V2Ray runs.
    retry_at: float = 0.0

    def due(self) -> bool:
        """May it be tried again now?"""
        return not self.rejected and time.monotonic() >= self.retry_at


class V2RayComponent(Component):
    name = "v2ray"
    field = "v2ray"
    #: TrafficSource: the TelemetryBatch field the per-user entries go in.
    traffic_field = "v2ray_users"

    def __init__(
        self,
        state_dir: str | Path,
        log_push: LogPush | None = None,
        binary: str | None = None,
        reconcile_seconds: float = 300.0,
        supervise_seconds: float = 1.0,
        start_timeout: float = START_TIMEOUT_SECONDS,
        xray_binary: str | None = None,
    ) -> None:
        overrides = {"v2ray": binary, "xray": xray_binary}
        # Absolute: V2Ray runs in this directory and must find its -config path from there.
        self._dir = Path(state_dir).absolute() / STATE_SUBDIR
        self._log_push = log_push
        #: The binary of each core (binary: V2Ray's, xray_binary: Xray's; else their $VPNFLEET_* or name).
        self.binaries = {name: core.binary(overrides.get(name)) for name, core in CORES.items()}
        self.binary = self.binaries[DEFAULT_CORE.name]
        #: The cores this node can run: those whose binary is there.
        self.capabilities = tuple(name for name, path in self.binaries.items() if shutil.which(path))
        self.reconcile_seconds = reconcile_seconds
        self.supervise_seconds = supervise_seconds
        self.start_timeout = start_timeout
        self.config_path = self._dir / CONFIG_FILE
        # apply, reconcile and supervisor restarts change V2Ray one at a time.
        self._lock = asyncio.Lock()
        self._record: ProcessRecord | None = self._load_record()
        # The V2Ray this process started (None if adopted or none): polled so it is reaped, never a zombie.
        self._child: subprocess.Popen | None = None
        # What the running V2Ray runs; None until started or adopted by this process.
        self._running: V2RaySpec | None = None
        self._good, good_port = self._load_good()
        self._api_port: int | None = good_port
        # Whether V2Ray should run: set by apply(part), cleared by apply(None). The supervisor obeys it.
        self._wanted = False
        self._meter = UsageMeter(self._dir / TRAFFIC_FILE)
        # Emails this driver removed, and emails seen with traffic but not desired: drift repair removes them.
        self._removed: dict[str, None] = {}
        self._extras: set[str] = set()
        #: How many times this driver started a V2Ray process (tests and the benchmark read it).
        self.starts = 0
        self._started_at = 0.0
        # Deaths and failed restarts since V2Ray last ran STABLE_SECONDS: the exponent of the restart delay.
        self._quick_deaths = 0
        self._restart_at = 0.0
        self._background: list[asyncio.Task] = []
        self._validated: tuple[bytes, V2RaySpec] | None = None
        # The desired structure that last failed to replace the running one (None: none, or it was replaced).
        self._structure_failure: StructureFailure | None = None
        # V2Ray runs _good, but config.json/last_good.json could not be written: the next apply writes them.
        self._unsaved = False

    # -- Component ---------------------------------------------------------------------------------------

    def validate(self, part: agent_pb2.V2RayConfig) -> None:
        self._spec_of(part)

    async def apply(self, part: agent_pb2.V2RayConfig | None) -> None:
        # Checking and hashing 10,000 users takes ~20 ms: off the event loop (validate() runs in a thread too).
        spec = await asyncio.to_thread(self._spec_of, part) if part is not None else None
        if spec is not None and not self._alive():
            # Nothing runs that could take the users meanwhile: say at once that the core is missing. (With a
            # core running, a switch to a missing one fails in _check() and the users still reach the running.)
            self._installed(CORES[spec.core])
        async with self._lock:
            if spec is None:
                await self._remove()
                return
            self._start_background()
            try:
                await self._apply_spec(spec)
            finally:
                # Whatever runs now is a good config (the new one, or the old one rolled back to): keep it up.
                self._wanted = self._good is not None

    async def _apply_spec(self, spec: V2RaySpec) -> None:
        """Users only if the structure is the running one; else restart into spec, and if that cannot be done
        (now), at least the users of spec on the V2Ray that runs."""
        running = await self._running_spec()
        if running is not None and running.structure == spec.structure:
            self._structure_failure = None
            await self._apply_users(running, spec)
            return
        try:
            await self._change_structure(spec, running is not None)
        except Exception as exc:
            running = await self._running_spec()
            if running is None:  # nothing runs (no good config, or it did not come back either)
                raise
            await self._users_without_structure(running, spec, exc)

    async def _apply_users(self, running: V2RaySpec, spec: V2RaySpec) -> None:
        """Make the running V2Ray (same structure as spec) have spec's users."""
        if running.users != spec.users:
            await self._change_users(running, spec)
        elif self._good != spec or self._unsaved:  # adopted, or the files lag behind: remember it as good
            await self._store_good(spec)

    async def _users_without_structure(self, running: V2RaySpec, spec: V2RaySpec, exc: Exception) -> None:
        """The structure of spec could not replace the running one: apply its users to the running inbounds
        anyway, then raise exc's failure (a ConfigRejected stays one: retrying it cannot help)."""
        # Everything structural stays what runs (its core too: the API calls and config.json must match it).
        kept = running.with_users_of(spec)
        try:
            await self._apply_users(running, kept)
        except Exception as users_exc:
            raise RuntimeError(f"{exc}; applying the users to the running inbounds failed too: {users_exc}") from exc
        failure = self._structure_failure
        if failure is None or failure.structure != spec.structure:
            when = "tried again with the next apply"
        elif failure.rejected:
            when = "not tried again until it changes"
        else:
            when = f"tried again in {max(0.0, failure.retry_at - time.monotonic()):.0f} s"
        message = f"{exc} (the users were applied to the running inbounds; the new structure is {when})"
        raise (ConfigRejected if isinstance(exc, ConfigRejected) else RuntimeError)(message) from exc

    def _installed(self, core: Core) -> str:
        """core's binary; RuntimeError (the apply is retried: it can be installed) if it is not there."""
        binary = self.binaries[core.name]
        if shutil.which(binary) is None:
            raise RuntimeError(f"{core.title} is not installed: {binary!r} not found (set ${core.binary_env})")
        return binary

    def _spec_of(self, part: agent_pb2.V2RayConfig) -> V2RaySpec:
        """The validated spec of part. The StateApplier calls validate() and then apply() with the same part:
        the second call reuses the first one's result instead of checking 10,000 users again."""
        digest = hashlib.sha256(part.SerializeToString(deterministic=True)).digest()
        if self._validated is None or self._validated[0] != digest:
            self._validated = (digest, spec_from_proto(part))
        return self._validated[1]

    # -- inspection (tests, benchmark, diagnostics) ------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The pid of the V2Ray this driver runs, None if none is running."""
        return self._record.pid if self._record is not None and self._alive() else None

    @property
    def api_port(self) -> int | None:
        return self._api_port

    def carried_traffic(self) -> dict[str, tuple[int, int]]:
        """Traffic taken from V2Ray and not yet in a spooled batch: {email: (uplink, downlink)}."""
        return self._meter.carried()

    async def close(self) -> None:
        """Stop the background tasks (V2Ray keeps running)."""
        tasks, self._background = self._background, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- structure: (re)start V2Ray ----------------------------------------------------------------------

    async def _change_structure(self, spec: V2RaySpec, running: bool) -> None:
        """Restart into spec, unless it failed before and a V2Ray runs: then only once its backoff has passed
        (a rejected one not at all), since each try drops every connection; raises the earlier error."""
        failure = self._structure_failure
        if failure is not None and failure.structure != spec.structure:
            self._structure_failure = failure = None  # another structure is desired now: a fresh start
        if running and failure is not None and not failure.due():
            raise (ConfigRejected if failure.rejected else RuntimeError)(failure.error)
        await self._restart_into(spec)
        self._structure_failure = None

    def _structure_failed(self, spec: V2RaySpec, exc: Exception, rejected: bool) -> None:
        """Remember why spec's structure failed, and when it may be tried again."""
        before = self._structure_failure
        failures = before.failures + 1 if before is not None and before.structure == spec.structure else 1
        delay = min(STRUCTURE_RETRY_MAX_SECONDS, STRUCTURE_RETRY_BASE_SECONDS * 2.0 ** min(failures - 1, 32))
        self._structure_failure = StructureFailure(spec.structure, str(exc), rejected, failures,
                                                   time.monotonic() + delay)

    async def _running_spec(self) -> V2RaySpec | None:
        """What the running V2Ray runs, adopting one an earlier agent process started; None if none runs."""
        if self._running is not None and self._alive():
            return self._running
        self._running = None
        record = self._record
        if record is None or self._child is not None or not process.is_running(record):
            return None
        try:
            data = await asyncio.to_thread(self.config_path.read_bytes)
            running, port = await asyncio.to_thread(v2config.parse, data)
        except (OSError, ValueError) as exc:
            log.warning("V2Ray pid %d runs %s, which is unreadable (%s); it will be replaced",
                        record.pid, self.config_path, exc)
            return None
        if running.core != record.core:  # config.json was replaced for another core after that process started
            log.warning("pid %d is %s, but %s is for %s; it will be replaced",
                        record.pid, record.core, self.config_path, running.core)
            return None
        async with self._api(port) as api:
            if not await api.alive():
                return None
        self._running, self._api_port = running, port
        self._started_at = time.monotonic()
        self._event("info", f"adopted the running {CORES[running.core].title} "
                            f"(pid {record.pid}, {len(running.users)} users)")
        return running

    async def _restart_into(self, spec: V2RaySpec) -> None:
        """Replace whatever runs by a V2Ray running spec; on failure the last good config runs again."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Chosen, not yet used: until the old V2Ray is stopped, _api_port stays the port its counters are read on.
        port = self._api_port_for(spec)
        try:
            await asyncio.to_thread(self._check, spec, port)
        except ConfigRejected as exc:
            self._structure_failed(spec, exc, rejected=True)
            raise
        # V2Ray accepts it: from here the old V2Ray goes. Its counters go first, into the carry; if it is the
        # V2Ray this driver drives, unreadable counters hold the restart (strict) rather than lose the bytes.
        await self._stop_counted(strict=self._running is not None)
        try:
            await self._launch(spec, port)
        except Exception as exc:
            # It may have served for up to start_timeout before giving up: its counters too.
            await self._stop_counted()
            self._structure_failed(spec, exc, rejected=False)
            if self._good is None:
                raise
            self._event("error", f"the new configuration did not come up ({exc}); restarting the last good one")
            try:
                await self._launch(self._good)
            except Exception as again:
                await self._stop_counted()
                raise RuntimeError(f"{exc}; restarting the last good configuration failed too: {again}") from exc
            raise
        self._removed.clear()  # a fresh V2Ray has exactly the configured users
        self._event("info", f"{CORES[spec.core].title} started (pid {self.pid}): {self._describe(spec)}")
        await self._store_good(spec)

    def _check(self, spec: V2RaySpec, port: int) -> None:
        """The core's `-test` on spec rendered to candidate.json (blocking: run it in a thread).

        First the files the inbounds name (TLS certificates and keys) must be readable by the user the core runs
        as: a RuntimeError naming the file, not a rejection, since the operator can fix it (chgrp/chmod) and the
        retry then passes; the core itself would only say "permission denied" somewhere in its error chain."""
        core = CORES[spec.core]
        binary = self._installed(core)
        candidate = self._dir / CANDIDATE_FILE
        # As root, V2Ray (and its -test, which opens the log files) runs as the data-plane user (agent.v2ray.process).
        user = dataplane_user.resolve()
        files = [path for inbound in spec.inbounds if inbound.tls is not None
                 for path in (inbound.tls.certificate_file, inbound.tls.key_file)]
        problem = process.unreadable_by(files, user)
        if problem is not None:
            who = user.name if user is not None else "the agent's user"
            raise RuntimeError(f"{core.title} runs as {who}, which cannot read a file its inbounds name: {problem}")
        process.prepare_dir(self._dir, user, (self._dir / ACCESS_LOG, self._dir / ERROR_LOG))
        try:
            write_atomic(candidate, self._render(spec, port), 0o600)
            process.share(candidate, user)
            process.check_config(binary, candidate, user=user, core=core)
        finally:
            candidate.unlink(missing_ok=True)

    def _api_port_for(self, spec: V2RaySpec) -> int:
        """The API port for spec: the current one, unless a desired inbound wants it; else a free one."""
        taken = {inbound.port for inbound in spec.inbounds}
        if self._api_port is None or self._api_port in taken:
            return process.pick_free_port(avoid=taken)
        return self._api_port

    async def _launch(self, spec: V2RaySpec, port: int | None = None) -> None:
        """Write config.json for spec and start V2Ray on it (nothing of ours may be running)."""
        port = port or self._api_port_for(spec)
        if not process.port_free(port):  # someone took it while no V2Ray of ours held it
            port = process.pick_free_port(avoid={inbound.port for inbound in spec.inbounds})
        core = CORES[spec.core]
        binary = self._installed(core)
        # From here the counters of whatever starts are read on this port (also if it fails to come up).
        self._api_port = port
        user = await asyncio.to_thread(dataplane_user.resolve)
        await asyncio.to_thread(process.prepare_dir, self._dir, user, (self._dir / ACCESS_LOG, self._dir / ERROR_LOG))
        data = await asyncio.to_thread(self._render, spec, port)
        await asyncio.to_thread(write_atomic, self.config_path, data, 0o600)
        await asyncio.to_thread(process.share, self.config_path, user)
        # No capability at all, unless an inbound's port is below the kernel's unprivileged-port start.
        bind = dataplane_user.needs_bind_capability([inbound.port for inbound in spec.inbounds] + [port])
        child = await asyncio.to_thread(process.launch, binary, self.config_path, self._dir / ERROR_LOG,
                                        user, bind, core)
        self.starts += 1
        self._child, self._started_at = child, time.monotonic()
        ticks = process.start_ticks(child.pid)
        # The record names the core: every API call to this process uses its service names (_api()).
        self._record = ProcessRecord(child.pid, ticks or 0, process.boot_id(), str(self.config_path), core.name,
                                     binary)
        await asyncio.to_thread(write_atomic, self._dir / RECORD_FILE, self._record.to_json(), 0o600)
        await self._wait_up(child, spec, port)
        self._running = spec
        self._restart_at = 0.0

    async def _wait_up(self, child: subprocess.Popen, spec: V2RaySpec, port: int) -> None:
        """Until the API answers and every inbound port listens; raises if V2Ray exits or takes too long."""
        deadline = time.monotonic() + self.start_timeout
        want = {inbound.port for inbound in spec.inbounds} | {port}
        title = CORES[spec.core].title
        async with self._api(port) as api:
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"{title} exited at start (status {child.returncode}): {self._error_tail()}")
                # psutil reads /proc/net/tcp*: a few ms per poll, not on the event loop.
                listening = await asyncio.to_thread(process.listening_ports, child.pid)
                if want <= listening and await api.alive(timeout=0.5):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{title} did not come up within {self.start_timeout:.0f} s: "
                                       f"{self._error_tail()}")
                await asyncio.sleep(0.05)

    async def _stop_counted(self, strict: bool = False) -> None:
        """_stop(), with V2Ray's traffic counters read into the carry first: they die with it.

        strict (a planned restart of the V2Ray this driver drives): if they cannot be read while its API still
        answers (a passing hiccup), V2Ray is left running and this raises, so the apply fails and is retried
        rather than losing subscribers' bytes. A V2Ray whose API no longer answers at all is stopped anyway:
        holding the restart would keep a wedged V2Ray (and every blocked subscriber on it) forever.
        Otherwise (rolling back, removing V2Ray, replacing one that could not be adopted) the stop goes on
        and the loss is logged as an error.
        """
        try:
            await self._keep_traffic()
        except OSError as exc:  # read and zeroed, but not recorded on disk: they are kept in memory
            log.warning("V2Ray's traffic counters could not be recorded on disk before stopping it: %s", exc)
        except ApiError as exc:
            if strict and await self._api_answers():
                raise RuntimeError(f"V2Ray was not restarted: its traffic counters could not be read first ({exc})"
                                   ) from exc
            self._event("error", f"V2Ray's traffic counters could not be read before stopping it; "
                                 f"the traffic since they were last read is lost: {exc}")
        await self._stop()

    async def _api_answers(self) -> bool:
        """Does the running V2Ray's API answer at all?"""
        if not self._api_port:
            return False
        try:
            async with self._api() as api:
                return await api.alive(timeout=API_ALIVE_TIMEOUT_SECONDS)
        except (ApiError, OSError):
            return False

    async def _stop(self) -> None:
        """Stop the V2Ray this driver runs (and any stray one running our config file); nothing else.
        Callers that stop a live V2Ray use _stop_counted()."""
        child, record = self._child, self._record
        self._child = self._record = self._running = None
        (self._dir / RECORD_FILE).unlink(missing_ok=True)

        def stop_all() -> None:
            if record is not None and process.is_running(record):
                process.terminate(record.pid, record.start_ticks)
            for pid, ticks in process.stray_processes(str(self.config_path)):
                log.warning("stopping a stray V2Ray (pid %d) running %s", pid, self.config_path)
                process.terminate(pid, ticks)
            if child is not None:
                if child.poll() is None:
                    child.kill()
                child.wait()

        await asyncio.to_thread(stop_all)

    async def _remove(self) -> None:
        """No V2Ray in the desired state: stop ours and forget it (its last traffic is still reported)."""
        self._wanted = False
        if self._record is None and self._good is None and not self.config_path.exists():
            return
        await self._stop_counted()
        for name in (CONFIG_FILE, LAST_GOOD_FILE, CANDIDATE_FILE):
            (self._dir / name).unlink(missing_ok=True)
        self._good = self._api_port = None
        self._unsaved = False
        self._structure_failure = None
        self._removed.clear()
        self._extras.clear()
        self._event("info", "V2Ray stopped (no longer in the desired state)")

    async def _store_good(self, spec: V2RaySpec) -> None:
        """spec runs now: it is the last good config; config.json says so too (for restarts from disk).

        What V2Ray runs is the truth, so spec is remembered as running and good before the files are written.
        If they cannot be, this raises (the apply fails and is retried, which writes them again) but V2Ray
        keeps spec's users: undoing the calls instead would give access back to users this apply removed
        (blocked, expired, rotated) because of a local disk error, and a failed undo would leave a mix.
        """
        self._good = self._running = spec
        self._unsaved = True
        port = self._api_port

        def write() -> None:
            data = self._render(spec, port)  # ~20 ms for 10,000 users: in this thread, not on the event loop
            if not self.config_path.exists() or self.config_path.read_bytes() != data:
                write_atomic(self.config_path, data, 0o600)
                process.share(self.config_path, dataplane_user.resolve())  # root:its group 0640; the link too
            # last_good.json holds the same bytes: a hard link to config.json's file rather than another
            # megabyte-sized write. config.json is only ever replaced by rename, so the link keeps them.
            link = self._dir / f".{LAST_GOOD_FILE}.link"
            link.unlink(missing_ok=True)
            os.link(self.config_path, link)
            os.replace(link, self._dir / LAST_GOOD_FILE)
            fsync_dir(self._dir)

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise RuntimeError(f"V2Ray runs the new configuration, but writing {self.config_path} failed ({exc}); "
                               "it is written again on the next try") from exc
        self._unsaved = False

    def _render(self, spec: V2RaySpec, api_port: int) -> bytes:
        """config.json's content for spec (pure CPU, ~20 ms for 10,000 users: callers run it in a thread)."""
        # The node's own addresses are read now: they are blocked like loopback (agent.egress).
        return v2config.dumps(v2config.render(spec, api_port, str(self._dir / ACCESS_LOG), str(self._dir / ERROR_LOG),
                                              egress.node_addresses()))

    # -- users: HandlerService, no restart ---------------------------------------------------------------

    async def _change_users(self, running: V2RaySpec, spec: V2RaySpec) -> None:
        plan = plan_users(running.users, spec.users)
        old_uuids = {email_key(e): u for e, u in running.users.items()}
        # Calls that changed V2Ray (or may have: cut short), by (inbound tag, user key, step number).
        done: dict[tuple[str, str, int], tuple[Inbound, UserStep]] = {}
        async with self._api() as api:
            failure = await self._run_steps(api, spec, plan, done)
            if failure is not None:
                undo_failures = await self._undo(api, done, old_uuids)
                if undo_failures:
                    raise RuntimeError(
                        f"{failure}; undoing this apply's {len(done)} user changes failed too "
                        f"({undo_failures[0]}); drift repair will finish the job"
                    )
                raise RuntimeError(f"{failure} ({len(done)} user changes of this apply undone)")
        for email in plan.removed + plan.rotated:
            self._forget_later(email)
        self._user_events(plan)
        await self._store_good(spec)  # sets _running first: drift repair keeps these users, even if it raises

    async def _run_steps(self, api: V2RayApi, spec: V2RaySpec, plan: UserPlan,
                         done: dict[tuple[str, str, int], tuple[Inbound, UserStep]]) -> str | None:
        """Run the plan on every inbound; stop starting new calls at the first failure. Returns the failure."""
        failures: list[str] = []
        limit = asyncio.Semaphore(API_CONCURRENCY)

        async def one_user(inbound: Inbound, key: str, steps: list[UserStep]) -> None:
            for number, step in enumerate(steps):  # in order: a rotated user is removed, then added again
                async with limit:
                    if failures:
                        return
                    done[inbound.tag, key, number] = (inbound, step)  # before the call: one cut short may have acted
                    try:
                        changed = await self._call(api, inbound, step)
                    except Exception as exc:
                        failures.append(str(exc))
                        return
                    if not changed:  # V2Ray already was that way: nothing to undo
                        del done[inbound.tag, key, number]

        await asyncio.gather(*(
            one_user(inbound, key, steps) for inbound in spec.inbounds for key, steps in plan.steps.items()
        ))
        return failures[0] if failures else None

    async def _undo(self, api: V2RayApi, done: dict[tuple[str, str, int], tuple[Inbound, UserStep]],
                    old_uuids: dict[str, str]) -> list[str]:
        """Reverse the calls in `done`, the later step of a user first. Returns what could not be undone."""
        per_user: dict[tuple[str, str], list[tuple[int, Inbound, UserStep]]] = {}
        for (tag, key, number), (inbound, step) in done.items():
            per_user.setdefault((tag, key), []).append((number, inbound, step))
        failures: list[str] = []
        limit = asyncio.Semaphore(API_CONCURRENCY)

        async def undo_user(key: str, steps: list[tuple[int, Inbound, UserStep]]) -> None:
            for _number, inbound, step in sorted(steps, key=lambda item: item[0], reverse=True):
                reverse = UserStep(step.email) if step.is_add else UserStep(step.email, old_uuids[key])
                async with limit:
                    try:
                        await self._call(api, inbound, reverse)
                    except Exception as exc:
                        failures.append(str(exc))
                        if step.is_add:  # it stays in V2Ray for now: drift repair removes it
                            self._forget_later(step.email)

        await asyncio.gather(*(undo_user(key, steps) for (_tag, key), steps in per_user.items()))
        return failures

    @staticmethod
    async def _call(api: V2RayApi, inbound: Inbound, step: UserStep) -> bool:
        if step.is_add:  # with the inbound's flow: a Vision user added without it could not connect
            return await api.add_user(inbound.tag, inbound.protocol, step.email, step.uuid, flow=inbound.flow)
        return await api.remove_user(inbound.tag, step.email)

    def _forget_later(self, email: str) -> None:
        """Remember a removed email so drift repair can make sure it stays removed."""
        self._removed.pop(email, None)
        self._removed[email] = None
        while len(self._removed) > MAX_REMOVED_TRACKED:
            self._removed.pop(next(iter(self._removed)))

    def _user_events(self, plan: UserPlan) -> None:
        for what, emails in (("added", plan.added), ("removed", plan.removed), ("rotated", plan.rotated)):
            if len(emails) > USER_EVENTS_DETAILED:
                self._event("info", f"{len(emails)} users {what}")
            else:
                for email in emails:
                    self._event("info", f"user {email} {what}")

    # -- drift repair ------------------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Make V2Ray's users match what was applied; returns how many users were repaired.

        Every applied user is added to every inbound again ("already exists" is the normal answer; a success
        means it was missing). Emails this driver removed earlier, and emails with traffic that are not
        applied, are removed. Raises ApiError if V2Ray cannot be reached. (V2Ray shows no user's id, so a user
        whose uuid was changed behind the driver's back is not noticed; that needs a restart to repair.)
        """
        async with self._lock:
            spec = self._running
            if spec is None or not self._alive():
                return 0
            wanted = {email_key(email) for email in spec.users}
            repaired: list[str] = []
            async with self._api() as api:
                seen = parse_user_stats(await api.query_stats(USER_PREFIX, reset=False))
                extras = {e for e, (up, down) in seen.items() if up or down} | self._extras | set(self._removed)
                extras = {e for e in extras if email_key(e) not in wanted}
                limit = asyncio.Semaphore(API_CONCURRENCY)

                async def repair(inbound: Inbound, step: UserStep) -> None:
                    async with limit:
                        if await self._call(api, inbound, step):
                            what = "was missing: added again" if step.is_add else "should not be there: removed"
                            repaired.append(f"user {step.email} on inbound {inbound.tag!r} {what}")

                calls: list[Awaitable[None]] = []
                for inbound in spec.inbounds:
                    calls += [repair(inbound, UserStep(e, u)) for e, u in spec.users.items()]
                    calls += [repair(inbound, UserStep(e)) for e in extras]
                errors = [r for r in await asyncio.gather(*calls, return_exceptions=True) if isinstance(r, Exception)]
            if errors:
                raise errors[0]
            # Every extra is now gone from every inbound: nothing left to watch.
            self._extras.clear()
            self._removed.clear()
        for line in repaired[:USER_EVENTS_DETAILED]:
            self._event("warning", f"drift repaired: {line}")
        if len(repaired) > USER_EVENTS_DETAILED:
            self._event("warning", f"drift repaired: {len(repaired)} user entries in all")
        return len(repaired)

    # -- background: supervision, drift repair, logs -----------------------------------------------------

    def _start_background(self) -> None:
        if any(not task.done() for task in self._background):
            return
        loop = asyncio.get_running_loop()
        tailer = LogTailer([(self._dir / ACCESS_LOG, True), (self._dir / ERROR_LOG, False)], self._v2ray_line)
        self._background = [
            loop.create_task(self._supervise(), name="v2ray-supervisor"),
            loop.create_task(self._tail(tailer), name="v2ray-logs"),
        ]

    async def _supervise(self) -> None:
        next_reconcile = time.monotonic() + self.reconcile_seconds
        while True:
            await asyncio.sleep(self.supervise_seconds)
            try:
                await self._supervise_once()
            except Exception:
                log.exception("supervising V2Ray failed")
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + self.reconcile_seconds
                try:
                    await self.reconcile()
                except Exception as exc:
                    self._event("warning", f"drift repair failed: {exc}")

    async def _supervise_once(self) -> None:
        """Restart a V2Ray that died (not stopped by us) from the last good config, with backoff."""
        if not self._wanted or self._good is None or self._alive() or self._lock.locked():
            return
        if time.monotonic() < self._restart_at:
            return
        async with self._lock:
            if not self._wanted or self._good is None or self._alive():
                return
            if self._restart_at == 0.0:  # just noticed: log it once, then wait the backoff delay
                status = f"status {self._child.poll()}" if self._child is not None else "exit status unknown"
                pid = self._record.pid if self._record is not None else "?"
                self._quick_deaths = self._quick_deaths + 1 if self._ran_briefly() else 1
                delay = self._backoff()
                self._restart_at = time.monotonic() + delay
                self._event("error", f"{self._title} (pid {pid}) exited ({status}); restarting it in {delay:.0f} s")
                return
            try:
                await self._stop_counted()  # ours is dead; a stray one running our config may not be
                await self._launch(self._good)
            except Exception as exc:
                await self._stop_counted()  # it may have come up halfway
                self._quick_deaths += 1
                delay = self._backoff()
                self._restart_at = time.monotonic() + delay
                self._event("error", f"restarting {self._title} failed: {exc}; next try in {delay:.0f} s")
                return
            self._restart_at = 0.0
            self._removed.clear()
            self._event("info", f"{self._title} restarted from the last good configuration (pid {self.pid})")

    def _ran_briefly(self) -> bool:
        return time.monotonic() - self._started_at < STABLE_SECONDS

    def _backoff(self) -> float:
        """1 s after the first death, doubling while V2Ray keeps dying or failing to start, at most 30 s."""
        return min(MAX_RESTART_DELAY_SECONDS, RESTART_BASE_SECONDS * 2.0 ** max(0, self._quick_deaths - 1))

    async def _tail(self, tailer: LogTailer) -> None:
        while True:
            try:
                await asyncio.to_thread(tailer.poll)
            except Exception:
                log.exception("reading V2Ray's logs failed")
            await asyncio.sleep(LOG_POLL_SECONDS)

    # -- telemetry (MetricsLoop traffic source) ----------------------------------------------------------

    async def take_traffic(self, seq: int = 0) -> list[agent_pb2.UserTraffic]:
        """Per-user transfer since the previous take (only users that moved bytes), for batch seq.

        Persisted before it is returned (see agent.v2ray.traffic); if V2Ray cannot be reached, only what was
        carried is returned and V2Ray's counters wait for the next take.
        """
        counters: dict[str, tuple[int, int]] = {}
        if self._api_port and self._alive():
            try:
                async with self._api() as api:
                    counters = parse_user_stats(await api.query_stats(USER_PREFIX, reset=True))
            except ApiError as exc:
                log.debug("cannot read V2Ray's traffic counters: %s", exc)
            self._note_extras(counters)
        return await asyncio.to_thread(self._meter.take, seq, counters)

    def give_back(self, entries: list[agent_pb2.UserTraffic]) -> None:
        """The batch with these entries was not spooled: report them with the next one."""
        self._meter.give_back(entries)

    def spooled(self, seq: int) -> None:
        """Batches up to seq are in the spool: taken entries kept for them are delivered."""
        self._meter.spooled(seq)

    async def _keep_traffic(self) -> None:
        """Read (and zero) V2Ray's counters into the carry: V2Ray is about to stop and would lose them.
        Raises ApiError if they cannot be read, OSError if they cannot be saved (they stay carried in memory)."""
        if not self._api_port or not self._alive():
            return
        async with self._api() as api:
            counters = parse_user_stats(await api.query_stats(USER_PREFIX, reset=True))
        await asyncio.to_thread(self._meter.keep, counters)

    def _note_extras(self, counters: dict[str, tuple[int, int]]) -> None:
        """Users with traffic that are not applied are left-overs: drift repair removes them."""
        if self._running is not None:
            wanted = {email_key(email) for email in self._running.users}
            self._extras.update(e for e in counters if email_key(e) not in wanted)

    # -- processes, events and state ---------------------------------------------------------------------

    def _api(self, port: int | None = None) -> V2RayApi:
        """A client of the API of the process this driver runs (on port, default its API port), speaking that
        process's core: the record names it, so counters are read from the old core during a core switch."""
        core = CORES[self._record.core] if self._record is not None else DEFAULT_CORE
        return V2RayApi(port or self._api_port, core=core)

    @property
    def _title(self) -> str:
        """The name of the core this driver runs (or ran last), for events."""
        if self._record is not None:
            return CORES[self._record.core].title
        spec = self._running or self._good
        return CORES[spec.core].title if spec is not None else DEFAULT_CORE.title

    def _alive(self) -> bool:
        """Is the V2Ray this driver runs (started or adopted) alive?"""
        if self._child is not None:
            return self._child.poll() is None
        return self._record is not None and process.is_running(self._record)

    def _error_tail(self, lines: int = 3) -> str:
        """The last lines of V2Ray's error log (redacted like the live logs), to explain a failed start."""
        try:
            with open(self._dir / ERROR_LOG, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
                text = handle.read().decode(errors="replace")
        except OSError:
            return "no output"
        useful = [parse_line(line, access=False)[1] for line in text.splitlines() if line.strip()]
        return redact_credentials(" | ".join(useful[-lines:])) or "no output"

    @staticmethod
    def _describe(spec: V2RaySpec) -> str:
        inbounds = ", ".join(f"{i.tag} ({i.protocol} over {i.transport}, {i.listen}:{i.port})"
                             for i in spec.inbounds) or "no inbounds"
        return f"{inbounds}; {len(spec.users)} users; log level {spec.log_level}"

    def _event(self, level: str, message: str) -> None:
        """A line for the live logs (source "v2ray"), at the agent's current log level."""
        levelno = LOG_LEVELS.get(level, logging.INFO)
        if self._log_push is None:
            log.log(levelno, "%s", message)
        elif log.isEnabledFor(levelno):
            self._log_push(level, "v2ray", message)

    def _v2ray_line(self, level: str, message: str) -> None:
        """A line from V2Ray's own logs; subscribers' source addresses masked unless the desired state says
        to show them (v2ray.access_log_addresses)."""
        running = self._running or self._good
        if running is None or not running.access_log_addresses:
            message = _mask_sources(message)
        self._event(level, redact_credentials(message))

    def _load_record(self) -> ProcessRecord | None:
        path = self._dir / RECORD_FILE
        try:
            return ProcessRecord.from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            log.error("%s is unreadable; a V2Ray it described is no longer tracked", path)
            return None

    def _load_good(self) -> tuple[V2RaySpec | None, int | None]:
        path = self._dir / LAST_GOOD_FILE
        try:
            spec, port = v2config.parse(path.read_bytes())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as exc:
            log.error("%s is unreadable (%s); there is no last good V2Ray configuration", path, exc)
            return None, None
        return spec, port


def _mask_sources(message: str) -> str:
    """mask_source_addresses(), also for Xray's access log lines, which put "from " before the source
    (`from 203.0.113.7:51234 accepted tcp:example.com:443 [vl -> direct] email: x`)."""
    if message.startswith(XRAY_SOURCE_PREFIX):
        return XRAY_SOURCE_PREFIX + mask_source_addresses(message[len(XRAY_SOURCE_PREFIX):])
    return mask_source_addresses(message)
