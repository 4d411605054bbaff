"""Component "wireguard": WireGuard interfaces and their peers (DesiredState.wireguard).

Backends: kernel WireGuard where `ip link add NAME type wireguard` works, wireguard-go otherwise (path from
$VPNFLEET_WIREGUARD_GO, default `wireguard-go` on PATH; $VPNFLEET_WIREGUARD_BACKEND=auto|kernel|userspace
forces one). Interfaces this driver created are tracked in state_dir/wireguard/interfaces.json (backend,
wireguard-go pid, NAT rules); only those are ever removed.

Apply, per interface: adopt the running device if there is one (never recreate a working tunnel), else
create it; then converge: read the device, send only the difference (one UAPI set: private key, port,
peers added/changed/removed with replace_allowed_ips), fix MTU/addresses/up/NAT. Interfaces no longer
desired go last. Before touching an interface its current state is snapshotted; if anything fails, every
interface touched by this apply is converged back to its snapshot (created ones are removed, removed ones
re-created) and the error is raised, so the component is reported FAILED with the previous config running.

wireguard-go processes run in their own session and outlive the agent: on SIGTERM the agent leaves them
alone, and the next agent adopts them. A supervisor restarts one that dies and re-applies its config.
Telemetry: take_traffic()/give_back() is the MetricsLoop traffic-source hook (per-peer deltas).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from agent.atomicfile import write_atomic
from agent.logbuffer import LOG_LEVELS
from agent.state import Component
from agent.wireguard import link, nat, uapi
from agent.wireguard.backend import Backend, KernelBackend, UserspaceBackend
from agent.wireguard.link import CommandError
from agent.wireguard.model import (
    DeviceState,
    DeviceUpdate,
    InterfaceSpec,
    PeerSpec,
    config_from_proto,
    plan_update,
    short_key,
)
from agent.wireguard.traffic import TrafficMeter
from protos import agent_pb2

log = logging.getLogger(__name__)

BACKEND_ENV = "VPNFLEET_WIREGUARD_BACKEND"
STATE_SUBDIR = "wireguard"
RECORDS_FILE = "interfaces.json"
TRAFFIC_FILE = "traffic.json"
#: Peer events logged one by one up to this many per apply; beyond it, one summary line.
PEER_EVENTS_DETAILED = 20
MAX_RESTART_DELAY_SECONDS = 30.0

LogPush = Callable[[str, str, str], None]


def _masquerades(record: dict | None) -> bool:
    """Does a firewall record (agent.wireguard.nat) include NAT? (Records hold the egress rules as well.)"""
    if not record:
        return False
    if record.get("tool") == "iptables":
        return any(rule["table"] == "nat" for rule in record.get("rules", []))
    return "masquerade" in record.get("script", "")


@dataclasses.dataclass
class Record:
    """An interface this driver owns (created or adopted)."""

    name: str
    backend: str  # "userspace" | "kernel"
    pid: int | None = None
    nat: dict | None = None


@dataclasses.dataclass
class Touch:
    """An interface changed by the running apply, and what to put back if the apply fails."""

    name: str
    #: None: the interface did not exist (roll back = remove it).
    target: InterfaceSpec | None
    endpoints: dict[str, str]


def wireguard_available(binary: str) -> bool:
    """Can this machine run WireGuard at all (module present or wireguard-go installed)?"""
    if shutil.which(binary) or Path("/sys/module/wireguard").exists():
        return True
    module_dir = Path("/lib/modules", os.uname().release, "kernel/drivers/net/wireguard")
    return module_dir.is_dir()


class WireGuardComponent(Component):
    name = "wireguard"
    field = "wireguard"

    def __init__(
        self,
        state_dir: str | Path,
        log_push: LogPush | None = None,
        wireguard_go: str | None = None,
        backend: str | None = None,
        supervise_seconds: float = 1.0,
    ) -> None:
        self._dir = Path(state_dir) / STATE_SUBDIR
        self._log_push = log_push
        self.mode = backend or os.environ.get(BACKEND_ENV) or "auto"
        if self.mode not in ("auto", "kernel", "userspace"):
            raise ValueError(f"{BACKEND_ENV} must be auto, kernel or userspace, got {self.mode!r}")
        self._userspace = UserspaceBackend(self._dir, binary=wireguard_go)
        self._kernel = KernelBackend()
        self._kernel_ok: bool | None = None if self.mode == "auto" else self.mode == "kernel"
        self.capabilities = ("wireguard",) if wireguard_available(self._userspace.binary) else ()
        self.supervise_seconds = supervise_seconds
        # apply, supervisor restarts and traffic reads each run in a worker thread, one at a time.
        self._lock = threading.Lock()
        self._records: dict[str, Record] = self._load_records()
        self._applied: dict[str, InterfaceSpec] = {}
        # Interfaces this process created or adopted (the others in _records come from a previous run).
        self._known: set[str] = set()
        # Peers' last seen endpoints (from telemetry reads), put back when a dead wireguard-go is restarted so
        # peers with a keepalive reconnect at once.
        self._endpoints: dict[str, dict[str, str]] = {}
        self._meter = TrafficMeter(self._dir / TRAFFIC_FILE)
        self._supervisor: asyncio.Task | None = None
        self._restart_at: dict[str, float] = {}
        self._restart_failures: dict[str, int] = {}

    # -- Component ---------------------------------------------------------------------------------------

    def validate(self, part: agent_pb2.WireGuardConfig) -> None:
        for spec in config_from_proto(part).values():
            nat.check_available(spec)

    async def apply(self, part: agent_pb2.WireGuardConfig | None) -> None:
        specs = config_from_proto(part) if part is not None else {}
        for spec in specs.values():
            nat.check_available(spec)
        try:
            await asyncio.to_thread(self._apply_sync, specs)
        finally:
            self._start_supervisor()

    # -- inspection (tests, diagnostics) -----------------------------------------------------------------

    def records(self) -> dict[str, Record]:
        return {name: dataclasses.replace(rec) for name, rec in self._records.items()}

    async def close(self) -> None:
        """Stop supervising (the interfaces keep running)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None

    # -- apply -------------------------------------------------------------------------------------------

    def _apply_sync(self, specs: dict[str, InterfaceSpec]) -> None:
        with self._lock:
            touched: list[Touch] = []
            try:
                for spec in specs.values():
                    self._bring(spec, touched)
                for name in [n for n in self._records if n not in specs]:
                    self._remove(name, touched)
            except Exception as exc:
                names = ", ".join(t.name for t in touched) or "nothing"
                self._event("error", f"apply failed: {exc}; rolling back {names}")
                failures = self._rollback(touched)
                if failures:
                    raise RuntimeError(f"{exc} (rollback incomplete: {'; '.join(failures)})") from exc
                raise
            self._applied = dict(specs)

    def _backend(self, rec: Record) -> Backend:
        return self._kernel if rec.backend == "kernel" else self._userspace

    def _bring(self, spec: InterfaceSpec, touched: list[Touch]) -> None:
        name = spec.name
        tracked = self._records.get(name)
        rec = self._live_record(name, tracked)
        if rec is None:
            # Not there, or tracked but dead: (re)create. Rolling back puts back what ran before, if anything.
            target = self._applied.get(name) if tracked else None
            touched.append(Touch(name, target, {}))
            if tracked is not None:
                self._backend(tracked).destroy(name, tracked.pid)
            rec = self._create(name, tracked.nat if tracked else None)
            current = None
        else:
            target, endpoints, current = self._snapshot(rec)
            touched.append(Touch(name, target, endpoints))
        self._converge(rec, spec, current=current)

    def _live_record(self, name: str, tracked: Record | None) -> Record | None:
        """The record of a working device named `name` (adopting it if needed); None if there is none.

        Raises if the name is taken by something this driver must not touch.
        """
        info = link.link_info(name)
        if info is None:
            return None
        if tracked is not None and name in self._known and self._backend(tracked).alive(name, tracked.pid):
            return tracked
        if tracked is not None and self._backend(tracked).alive(name, tracked.pid) and self._answers(tracked):
            rec = tracked  # started by a previous agent process: adopt it as it runs
        elif info.kind == "wireguard":
            rec = Record(name, "kernel", None, tracked.nat if tracked else None)
        elif uapi.answers(name):
            pid = self._userspace.find_pid(name)
            if pid is None:
                raise ValueError(
                    f"interface {name}: {uapi.socket_path(name)} is served by a wireguard-go in another "
                    "network namespace; pick another interface name"
                )
            rec = Record(name, "userspace", pid, tracked.nat if tracked else None)
        elif tracked is not None:
            return None  # our device, but its process is gone: recreate it
        else:
            raise ValueError(f"interface {name} already exists and is not a WireGuard interface managed here")
        device = self._backend(rec).get(name)
        self._records[name] = rec
        self._save_records()
        self._meter.adopt(name, device)
        self._known.add(name)
        how = "kernel WireGuard" if rec.backend == "kernel" else f"wireguard-go pid {rec.pid}"
        self._event("info", f"{name}: adopted the running interface ({how}, {len(device.peers)} peers)")
        return rec

    def _answers(self, rec: Record) -> bool:
        try:
            self._backend(rec).get(rec.name)
        except (CommandError, uapi.UapiError, OSError):
            return False
        return True

    def _create(self, name: str, nat_record: dict | None) -> Record:
        backend, pid = self._create_device(name)
        rec = Record(name, backend.kind, pid, nat_record)
        self._records[name] = rec
        self._save_records()
        self._meter.reset(name)
        self._known.add(name)
        how = "kernel WireGuard" if pid is None else f"wireguard-go pid {pid}"
        self._event("info", f"{name}: created ({how})")
        return rec

    def _create_device(self, name: str) -> tuple[Backend, int | None]:
        if self._kernel_ok is not False:
            try:
                self._kernel.create(name)
            except CommandError as exc:
                if self._kernel_ok:
                    raise
                log.info("kernel WireGuard unavailable (%s); using wireguard-go", exc)
                self._kernel_ok = False
            else:
                self._kernel_ok = True
                return self._kernel, None
        return self._userspace, self._userspace.create(name)

    def _snapshot(self, rec: Record) -> tuple[InterfaceSpec, dict[str, str], DeviceState]:
        """The interface as it runs now, as a spec (to roll back to), its peers' learned endpoints, and the
        device state it was read from."""
        device = self._backend(rec).get(rec.name)
        info = link.link_info(rec.name)
        ids = self._peer_ids(rec.name)
        peers = {
            public: PeerSpec(public, s.preshared_key, s.allowed_ips, s.persistent_keepalive, ids.get(public, ""))
            for public, s in device.peers.items()
        }
        spec = InterfaceSpec(
            name=rec.name,
            private_key=device.private_key,
            listen_port=device.listen_port,
            addresses=tuple(link.addresses(rec.name)),
            mtu=info.mtu if info else 0,
            nat=_masquerades(rec.nat),
            peers=peers,
        )
        applied = self._applied.get(rec.name)
        if applied is not None:  # not readable from the device: as applied
            spec = dataclasses.replace(spec, peer_to_peer=applied.peer_to_peer, egress=applied.egress)
        endpoints = {public: s.endpoint for public, s in device.peers.items() if s.endpoint}
        return spec, endpoints, device

    def _peer_ids(self, name: str) -> dict[str, str]:
        spec = self._applied.get(name)
        return {public: peer.peer_id for public, peer in spec.peers.items()} if spec else {}

    def _converge(
        self,
        rec: Record,
        spec: InterfaceSpec,
        endpoints: dict[str, str] | None = None,
        current: DeviceState | None = None,
    ) -> None:
        """Make the running interface match spec, changing only what differs (current: just read)."""
        name = spec.name
        backend = self._backend(rec)
        info = link.link_info(name)
        if info is None:
            raise CommandError(f"interface {name} disappeared")
        if spec.mtu and info.mtu != spec.mtu:
            link.set_mtu(name, spec.mtu)
        if current is None:
            current = backend.get(name)
        update = plan_update(current, spec, endpoints)
        if update:
            try:
                backend.set(name, update)
            except uapi.UapiError as exc:
                if exc.errno == -98 and update.listen_port:
                    raise CommandError(f"interface {name}: UDP port {update.listen_port} is already in use") from None
                raise
            removed = {p: current.peers[p] for p in update.removed}
            if removed:
                self._meter.retire(name, removed, self._peer_ids(name))
            self._peer_events(name, set(current.peers), update, spec)
        have = link.addresses(name)
        for address in have:
            if address not in spec.addresses:
                link.del_address(name, address)
        for address in spec.addresses:
            if address not in have:
                link.add_address(name, address)
        if not info.up:
            link.set_up(name)
        rec.nat = nat.ensure(spec, rec.nat)
        self._save_records()
        if spec.listen_port and (update.listen_port is not None or not info.up):
            # The kernel binds only once the link is up; a port taken meanwhile shows here.
            port = backend.get(name).listen_port
            if port != spec.listen_port:
                raise CommandError(f"interface {name}: not listening on UDP port {spec.listen_port} (port in use?)")

    def _remove(self, name: str, touched: list[Touch]) -> None:
        rec = self._records[name]
        backend = self._backend(rec)
        target, endpoints = self._applied.get(name), {}
        if backend.alive(name, rec.pid) and self._answers(rec):
            target, endpoints, device = self._snapshot(rec)
            self._meter.retire(name, device.peers, self._peer_ids(name))
        touched.append(Touch(name, target, endpoints))
        nat.remove(rec.nat)
        backend.destroy(name, rec.pid)
        del self._records[name]
        self._known.discard(name)
        self._save_records()
        self._meter.forget(name)
        self._event("info", f"{name}: removed")

    def _rollback(self, touched: list[Touch]) -> list[str]:
        failures = []
        for touch in reversed(touched):
            try:
                if touch.target is None:
                    rec = self._records.pop(touch.name, None)
                    if rec is not None:
                        nat.remove(rec.nat)
                        self._backend(rec).destroy(touch.name, rec.pid)
                        self._save_records()
                        self._meter.forget(touch.name)
                else:
                    rec = self._records.get(touch.name)
                    if rec is None or not self._backend(rec).alive(touch.name, rec.pid):
                        if rec is not None:
                            self._backend(rec).destroy(touch.name, rec.pid)
                        rec = self._create(touch.name, rec.nat if rec else None)
                    self._converge(rec, touch.target, touch.endpoints)
                self._event("warning", f"{touch.name}: rolled back to its previous configuration")
            except Exception as exc:  # keep rolling back the others
                log.exception("rolling back %s failed", touch.name)
                failures.append(f"{touch.name}: {exc}")
        return failures

    # -- supervision -------------------------------------------------------------------------------------

    def _start_supervisor(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            if any(rec.backend == "userspace" for rec in self._records.values()):
                loop = asyncio.get_running_loop()
                self._supervisor = loop.create_task(self._supervise(), name="wireguard-supervisor")

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self.supervise_seconds)
            try:
                await asyncio.to_thread(self._supervise_once)
            except Exception:
                log.exception("supervising wireguard-go failed")

    def _supervise_once(self) -> None:
        for name, rec in list(self._records.items()):
            if rec.backend != "userspace" or self._userspace.alive(name, rec.pid):
                continue
            if time.monotonic() < self._restart_at.get(name, 0.0):
                continue
            with self._lock:
                rec = self._records.get(name)
                spec = self._applied.get(name)
                if rec is None or spec is None or self._userspace.alive(name, rec.pid):
                    continue
                self._event("warning", f"{name}: wireguard-go (pid {rec.pid}) is gone; restarting it")
                new: Record | None = None
                try:
                    self._userspace.destroy(name, rec.pid)  # leftovers: a stale socket or link
                    new = self._create(name, rec.nat)
                    self._converge(new, spec, self._endpoints.get(name))
                except Exception as exc:
                    if new is not None:  # half-configured: stop it, so the next try starts clean
                        try:
                            self._userspace.destroy(name, new.pid)
                        except Exception:
                            log.exception("%s: stopping the half-configured wireguard-go failed", name)
                    failures = self._restart_failures.get(name, 0) + 1
                    self._restart_failures[name] = failures
                    delay = min(MAX_RESTART_DELAY_SECONDS, 2.0 ** (failures - 1))
                    self._restart_at[name] = time.monotonic() + delay
                    self._event("error", f"{name}: restarting wireguard-go failed: {exc}; next try in {delay:.0f} s")
                else:
                    self._restart_failures.pop(name, None)
                    self._restart_at.pop(name, None)
                    self._event("info", f"{name}: restarted (wireguard-go pid {new.pid}), configuration re-applied")

    # -- telemetry (MetricsLoop traffic source) ----------------------------------------------------------

    traffic_field = "wireguard_peers"

    async def take_traffic(self, seq: int = 0) -> list[agent_pb2.PeerTraffic]:
        """Per-peer transfer since the previous take (only peers that moved bytes or shook hands).

        The baseline moves on disk at once, so an agent crash before the batch is spooled loses these
        deltas (a few seconds of counting), never counts them twice.
        """
        if not self._records:
            return []
        entries, events = await asyncio.to_thread(self._take_sync)
        for level, message in events:
            self._event(level, message)
        return entries

    def give_back(self, peers: list[agent_pb2.PeerTraffic]) -> None:
        """The batch with these entries was not spooled: report them with the next one."""
        self._meter.give_back(peers)

    def spooled(self, seq: int) -> None:
        """Nothing to do: taken deltas are not kept once handed over."""

    def _take_sync(self):
        with self._lock:  # an apply retiring peers meanwhile would count their bytes twice
            devices = {}
            for name, rec in list(self._records.items()):
                try:
                    device = self._backend(rec).get(name)
                except (CommandError, uapi.UapiError, OSError) as exc:
                    log.debug("%s: cannot read peer counters: %s", name, exc)
                    continue
                devices[name] = (device, self._peer_ids(name))
                self._endpoints[name] = {p: s.endpoint for p, s in device.peers.items() if s.endpoint}
            return self._meter.take(devices)

    # -- events and state --------------------------------------------------------------------------------

    def _peer_events(self, name: str, current: set[str], update: DeviceUpdate, spec: InterfaceSpec) -> None:
        old_ids = self._peer_ids(name)
        groups: dict[str, list[str]] = {"removed": [], "added": [], "updated": []}
        for peer in update.peers:
            if peer.remove:
                groups["removed"].append(old_ids.get(peer.public_key) or short_key(peer.public_key))
                continue
            want = spec.peers.get(peer.public_key)
            label = (want.peer_id if want else "") or short_key(peer.public_key)
            groups["updated" if peer.public_key in current else "added"].append(label)
        for what, labels in groups.items():
            if len(labels) > PEER_EVENTS_DETAILED:
                self._event("info", f"{name}: {len(labels)} peers {what}")
                continue
            for label in labels:
                self._event("info", f"{name}: peer {label} {what}")

    def _event(self, level: str, message: str) -> None:
        """A line for the live logs (source "wireguard"), at the agent's current log level."""
        levelno = LOG_LEVELS.get(level, logging.INFO)
        if self._log_push is None:
            log.log(levelno, "%s", message)
        elif log.isEnabledFor(levelno):
            self._log_push(level, "wireguard", message)

    def _load_records(self) -> dict[str, Record]:
        path = self._dir / RECORDS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.error("%s is unreadable; WireGuard interfaces it listed are no longer tracked", path)
            return {}
        return {
            name: Record(name, item["backend"], item.get("pid"), item.get("nat"))
            for name, item in data.get("interfaces", {}).items()
        }

    def _save_records(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {
            "interfaces": {
                name: {"backend": rec.backend, "pid": rec.pid, "nat": rec.nat} for name, rec in self._records.items()
            }
        }
        write_atomic(self._dir / RECORDS_FILE, json.dumps(data, indent=1).encode(), 0o600)
