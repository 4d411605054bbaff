"""The engine's desired-state loop (Engine._apply_desired) without a controller: a failed apply is applied
again on the applier's backoff until it passes, a newer revision comes first, and every outcome is reported."""

from __future__ import annotations

import asyncio
import logging
import types

from agent.config import AgentConfig
from agent.engine import Engine
from agent.logbuffer import LogBuffer
from agent.state import AppliedStateStore, Component, StateApplier
from protos import agent_pb2

OK = agent_pb2.ComponentStatus.OK
FAILED = agent_pb2.ComponentStatus.FAILED


class Flaky(Component):
    """Fails its first `failures` applies with a transient error (a HandlerService call timing out)."""

    name = "flaky"
    field = "agent"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.applied: list[int] = []

    async def apply(self, part):
        self.applied.append(part.metrics_interval_seconds)
        if len(self.applied) <= self.failures:
            raise RuntimeError("AlterInbound: deadline exceeded")


def engine_with(tmp_path, component: Component) -> Engine:
    config = AgentConfig(grpc_addr="127.0.0.1:1", enroll_addr="127.0.0.1:1", ca_cert_pem="", state_dir=str(tmp_path))
    logs = types.SimpleNamespace(buffer=LogBuffer(100), set_level=lambda level: None, level="info")
    engine = Engine(config, logs)
    engine.applier = StateApplier([component], AppliedStateStore(tmp_path), retry_base=0.05, retry_max=0.2)
    return engine


def state(revision: int, interval: int) -> agent_pb2.DesiredState:
    return agent_pb2.DesiredState(revision=revision, agent=agent_pb2.AgentSettings(metrics_interval_seconds=interval))


async def next_report(engine: Engine, seen: int) -> tuple[int, agent_pb2.AppliedReport]:
    return await asyncio.wait_for(engine._reports.wait_newer(seen), 5)


async def test_a_failed_apply_is_retried_until_it_passes_and_each_outcome_is_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent")
    flaky = Flaky(failures=3)
    engine = engine_with(tmp_path, flaky)
    loop = asyncio.create_task(engine._apply_desired())
    try:
        engine._desired.set(state(7, 20))  # sent once: the controller does not send it again
        seen, report = await next_report(engine, 0)
        assert (report.revision, report.attempted_revision, report.components[0].state) == (0, 7, FAILED)
        states = []
        while not states or states[-1] != OK:
            seen, report = await next_report(engine, seen)
            states.append(report.components[0].state)
        assert states == [FAILED, FAILED, OK] and report.revision == 7 and flaky.applied == [20] * 4
        assert caplog.text.count("retrying desired state revision 7") == 3
        # Applied: no more retries.
        await asyncio.sleep(0.5)
        assert flaky.applied == [20] * 4 and engine._reports.version == seen
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_newer_revision_replaces_the_one_being_retried(tmp_path):
    flaky = Flaky(failures=1)
    engine = engine_with(tmp_path, flaky)
    engine.applier.retry_base = engine.applier.retry_max = 30.0  # the retry would come much later
    loop = asyncio.create_task(engine._apply_desired())
    try:
        engine._desired.set(state(1, 20))
        seen, report = await next_report(engine, 0)
        assert report.components[0].state == FAILED
        engine._desired.set(state(2, 30))
        seen, report = await next_report(engine, seen)
        assert (report.revision, report.components[0].state) == (2, OK) and flaky.applied == [20, 30]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
