"""Desired state: apply only what changed, keep the last applied state on disk, report per component.

The plug-in point for data-plane drivers is `Component`: a driver names the DesiredState field that holds
its part and implements apply(). StateApplier hashes each part and calls apply() only when the hash
changed, so a resent or partly changed state touches nothing that is already right.

Revisions: the revision reported as applied is the last one that every component applied. A component
that fails keeps its previous configuration (the driver rolls back) and is reported FAILED; the other
components of the same state still move on. What is stored on disk is what runs: each component's part
as last applied successfully, under the last good revision.

Retries: the controller resends a state only when it changes or the agent reconnects, so a failure that may
pass (V2Ray's API timed out, a process died halfway) would otherwise stand until then, with the old
configuration running (e.g. a blocked subscriber keeping access). While the last apply failed like that,
retry_delay() says when to apply the same state again (2 s, doubling to 60 s; back to 2 s after a success or
for a new revision) and retry() does it. A ValueError is the component saying that the part itself cannot be
applied (validate()'s contract, `v2ray -test` refusing a config): trying again cannot help, so it waits for the
next desired state.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Sequence

from google.protobuf.message import DecodeError, Message

from agent.atomicfile import write_atomic
from protos import agent_pb2

log = logging.getLogger(__name__)

APPLIED_STATE_FILE = "applied_state.pb"
#: First delay before a failed apply is tried again; it doubles per failure up to RETRY_MAX_SECONDS.
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0

Status = agent_pb2.ComponentStatus


class Component(abc.ABC):
    """One configurable part of the node ("agent" today; "v2ray", "wireguard", "nodepass" next).

    To add a driver: subclass this, set `name`, `field` (its DesiredState field) and `capabilities`,
    implement apply() (and validate() for cheap checks), and list it in agent.drivers.build_components().
    """

    #: Name reported in ComponentStatus.
    name: str = ""
    #: Name of the DesiredState field holding this component's part.
    field: str = ""
    #: Announced in Hello so the controller knows what this agent can drive.
    capabilities: tuple[str, ...] = ()

    def validate(self, part: Message) -> None:
        """Raise ValueError (with a reason an operator can act on) if part cannot be applied.

        Runs in a worker thread (checking 10,000 subscribers takes a while): pure checks only, no event loop.
        """

    @abc.abstractmethod
    async def apply(self, part: Message | None) -> None:
        """Make the component run `part`; None means the component is absent from the desired state.

        Called only when the part's hash changed (and once at startup with the stored part), or again
        after a failure (a retry). Must be idempotent. On failure raise, leaving the previous
        configuration in place (roll back); raise ValueError only if retrying the same part cannot help.
        Must never stop the data plane because the controller is unreachable: it is called only with
        desired states, never on connection events.
        """


def component_part(state: agent_pb2.DesiredState, field: str) -> Message | None:
    """The component's part of state, or None if the state does not carry it."""
    return getattr(state, field) if state.HasField(field) else None


def part_hash(part: Message | None) -> str:
    """Hex sha256 of the part's deterministic serialization; "" for an absent part."""
    if part is None:
        return ""
    return hashlib.sha256(part.SerializeToString(deterministic=True)).hexdigest()


class AppliedStateStore:
    """The last applied DesiredState in state_dir/applied_state.pb (atomic writes)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / APPLIED_STATE_FILE

    def load(self) -> agent_pb2.DesiredState | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        state = agent_pb2.DesiredState()
        try:
            state.ParseFromString(data)
        except DecodeError:
            log.error("%s is unreadable; starting without an applied state", self.path)
            return None
        return state

    def save(self, state: agent_pb2.DesiredState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.path, state.SerializeToString(deterministic=True), 0o600)


class StateApplier:
    """Applies desired states to the components, one at a time, and remembers the outcome."""

    def __init__(
        self,
        components: Sequence[Component],
        store: AppliedStateStore,
        retry_base: float = RETRY_BASE_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
    ) -> None:
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate component names: {names}")
        self._components = list(components)
        self._store = store
        # What runs now: each component's last successfully applied part; revision = last good revision.
        self._running = agent_pb2.DesiredState()
        # Hash of the part each component runs; None until the component was applied once.
        self._hashes: dict[str, str | None] = {c.name: None for c in components}
        self._statuses: dict[str, Status] = {}
        self._lock = asyncio.Lock()
        self.last_report: agent_pb2.AppliedReport | None = None
        self.retry_base = retry_base
        self.retry_max = retry_max
        # The state last attempted and whether it is persisted: what retry() applies again.
        self._attempted: tuple[agent_pb2.DesiredState, bool] | None = None
        # Components whose last apply failed in a way a retry may fix.
        self._transient: set[str] = set()
        # Failed attempts in a row of the attempted revision: the exponent of the retry delay.
        self._failures = 0

    @property
    def applied_revision(self) -> int:
        return self._running.revision

    @property
    def capabilities(self) -> list[str]:
        return [cap for c in self._components for cap in c.capabilities]

    async def load_and_apply(self) -> agent_pb2.AppliedReport | None:
        """At startup, before any connection: bring the node back to the state stored on disk."""
        stored = self._store.load()
        if stored is None:
            return None
        log.info("re-applying stored desired state, revision %d", stored.revision)
        async with self._lock:
            # The stored state was good when applied; a component failing now (environment, not config)
            # keeps its stored part so the next restart tries it again.
            self._running.CopyFrom(stored)
            return await self._apply_locked(stored, persist=False)

    async def apply(self, desired: agent_pb2.DesiredState) -> agent_pb2.AppliedReport | None:
        """Apply a desired state from the controller. Returns the report, or None if it was stale."""
        async with self._lock:
            if desired.revision < self._running.revision:
                log.info(
                    "ignoring desired state revision %d: revision %d is applied",
                    desired.revision,
                    self._running.revision,
                )
                return None
            return await self._apply_locked(desired, persist=True)

    def retry_delay(self) -> float | None:
        """Seconds to wait before retry(); None while there is nothing a retry could fix."""
        if not self._transient:
            return None
        return min(self.retry_max, self.retry_base * 2.0 ** min(self._failures - 1, 32))

    async def retry(self) -> agent_pb2.AppliedReport | None:
        """Apply the last attempted state again (only its failed components run); None if nothing to retry."""
        async with self._lock:
            if not self._transient or self._attempted is None:
                return None
            desired, persist = self._attempted
            errors = "; ".join(f"{name}: {self._statuses[name].error}" for name in sorted(self._transient))
            attempt = self._failures + 1
            log.warning("retrying desired state revision %d (attempt %d) after: %s", desired.revision, attempt, errors)
            return await self._apply_locked(desired, persist)

    async def _apply_locked(self, desired: agent_pb2.DesiredState, persist: bool) -> agent_pb2.AppliedReport:
        if self._attempted is None or self._attempted[0].revision != desired.revision:
            self._failures = 0  # a new revision starts its retries from the shortest delay
        self._attempted = (desired, persist)
        all_ok = True
        transient: set[str] = set()
        for component in self._components:
            status, retryable = await self._apply_component(component, desired)
            self._statuses[component.name] = status
            all_ok = all_ok and status.state != Status.FAILED
            if retryable:
                transient.add(component.name)
        self._transient = transient
        self._failures = self._failures + 1 if transient else 0
        if all_ok:
            self._running.revision = desired.revision
        if persist:
            # Off the event loop: with 10,000 subscribers this is a megabyte to serialise and fsync.
            await asyncio.to_thread(self._store.save, self._running)
        report = agent_pb2.AppliedReport(
            revision=self._running.revision,
            attempted_revision=desired.revision,
            components=[self._statuses[c.name] for c in self._components],
        )
        self.last_report = report
        if all_ok:
            log.info("applied desired state revision %d", desired.revision)
        elif transient:
            log.warning(
                "desired state revision %d failed; running revision %d; trying again in %.0f s",
                desired.revision, self._running.revision, self.retry_delay(),
            )
        else:
            log.warning(
                "desired state revision %d failed; running revision %d", desired.revision, self._running.revision
            )
        return report

    def _replace_part(self, field: str, part: Message | None) -> None:
        """Swap one part of the running state by building a new message: with protobuf's C backend, copying
        into a long-lived message keeps every earlier copy's memory until that message is freed (about 1 MiB
        per apply of a 5,000-peer WireGuard interface, found by bench/wireguard.py)."""
        running = agent_pb2.DesiredState()
        running.CopyFrom(self._running)
        if part is None:
            running.ClearField(field)
        else:
            getattr(running, field).CopyFrom(part)
        self._running = running

    async def _apply_component(
        self, component: Component, desired: agent_pb2.DesiredState
    ) -> tuple[Status, bool]:
        """The component's status after applying its part, and whether a failure is worth a retry."""
        part = component_part(desired, component.field)
        # Hashing and validating 10,000 subscribers takes tens of milliseconds: not on the event loop.
        new_hash = await asyncio.to_thread(part_hash, part)
        previous = self._statuses.get(component.name)
        if new_hash == self._hashes[component.name] and previous is not None and previous.state != Status.FAILED:
            return previous, False  # unchanged: touch nothing
        try:
            if part is not None:
                await asyncio.to_thread(component.validate, part)
            await component.apply(part)
        except Exception as exc:  # a driver failure is reported, never allowed to kill the agent
            log.warning("component %s: apply failed: %s", component.name, exc)
            failed = Status(
                name=component.name,
                state=Status.FAILED,
                error=str(exc) or type(exc).__name__,
                config_hash=self._hashes[component.name] or "",
            )
            return failed, not isinstance(exc, ValueError)
        self._hashes[component.name] = new_hash
        self._replace_part(component.field, part)
        if part is None:
            return Status(name=component.name, state=Status.ABSENT), False
        log.info("component %s: applied config %s", component.name, new_hash[:12])
        return Status(name=component.name, state=Status.OK, config_hash=new_hash), False
