import hashlib

import pytest

from agent.drivers.agent_settings import AgentSettingsComponent
from agent.state import AppliedStateStore, Component, StateApplier, part_hash
from protos import agent_pb2

OK = agent_pb2.ComponentStatus.OK
FAILED = agent_pb2.ComponentStatus.FAILED
ABSENT = agent_pb2.ComponentStatus.ABSENT


class Recorder:
    """Stands in for the metrics loop and the log control."""

    def __init__(self) -> None:
        self.intervals: list[int] = []
        self.levels: list[str] = []


def settings_component(rec: Recorder) -> AgentSettingsComponent:
    return AgentSettingsComponent(
        default_metrics_interval=10,
        default_log_level="info",
        set_metrics_interval=rec.intervals.append,
        set_log_level=rec.levels.append,
    )


class FlakyComponent(Component):
    """A data-plane stand-in on the same field; fails while `fail` is set, as a driver would."""

    name = "flaky"
    field = "agent"
    capabilities = ("flaky",)

    def __init__(self) -> None:
        self.fail = False
        self.applied: list[agent_pb2.AgentSettings | None] = []

    async def apply(self, part):
        if self.fail:
            raise RuntimeError("v2ray -test said no")
        self.applied.append(part)


def desired(revision: int, interval: int = 5, level: str = "debug") -> agent_pb2.DesiredState:
    return agent_pb2.DesiredState(
        revision=revision, agent=agent_pb2.AgentSettings(metrics_interval_seconds=interval, log_level=level)
    )


def status(report: agent_pb2.AppliedReport, name: str) -> agent_pb2.ComponentStatus:
    return next(c for c in report.components if c.name == name)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


async def test_applies_and_reports_and_persists(tmp_path, rec):
    store = AppliedStateStore(tmp_path)
    applier = StateApplier([settings_component(rec)], store)
    report = await applier.apply(desired(3))
    assert (report.revision, report.attempted_revision) == (3, 3)
    agent_status = status(report, "agent")
    assert agent_status.state == OK
    expected_hash = hashlib.sha256(desired(3).agent.SerializeToString(deterministic=True)).hexdigest()
    assert agent_status.config_hash == expected_hash
    assert (rec.intervals, rec.levels) == ([5], ["debug"])
    assert applier.applied_revision == 3
    assert store.load() == desired(3)
    assert applier.capabilities == ["agent-settings"]


async def test_only_changed_parts_are_applied(tmp_path, rec):
    applier = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    await applier.apply(desired(1))
    report = await applier.apply(desired(2))  # new revision, same content
    assert rec.intervals == [5]  # not applied again
    assert report.revision == 2 and status(report, "agent").state == OK
    await applier.apply(desired(2))  # a resend
    assert rec.intervals == [5]
    await applier.apply(desired(3, interval=7))
    assert rec.intervals == [5, 7]


async def test_lower_revision_is_ignored(tmp_path, rec):
    applier = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    await applier.apply(desired(5))
    assert await applier.apply(desired(4, interval=60)) is None
    assert rec.intervals == [5]
    assert applier.applied_revision == 5


@pytest.mark.parametrize(
    "bad, reason",
    [
        (desired(2, interval=3601), "metrics_interval_seconds"),
        (desired(2, level="loud"), "log_level"),
    ],
)
async def test_invalid_settings_fail_and_keep_the_previous_ones(tmp_path, rec, bad, reason):
    store = AppliedStateStore(tmp_path)
    applier = StateApplier([settings_component(rec)], store)
    good = await applier.apply(desired(1))
    report = await applier.apply(bad)
    agent_status = status(report, "agent")
    assert agent_status.state == FAILED
    assert reason in agent_status.error
    assert agent_status.config_hash == status(good, "agent").config_hash  # what still runs
    assert (report.revision, report.attempted_revision) == (1, 2)
    assert (rec.intervals, rec.levels) == ([5], ["debug"])  # nothing changed
    assert applier.applied_revision == 1
    assert store.load() == desired(1)
    # The same bad state again is tried again and fails again; a fixed one then applies.
    assert status(await applier.apply(bad), "agent").state == FAILED
    fixed = await applier.apply(desired(3, interval=9))
    assert (fixed.revision, status(fixed, "agent").state) == (3, OK)


async def test_one_failed_component_holds_the_revision_but_not_the_others(tmp_path, rec):
    flaky = FlakyComponent()
    store = AppliedStateStore(tmp_path)
    applier = StateApplier([settings_component(rec), flaky], store)
    await applier.apply(desired(1))
    flaky.fail = True
    report = await applier.apply(desired(2, interval=20))
    assert status(report, "agent").state == OK
    assert status(report, "flaky").state == FAILED
    assert "v2ray -test said no" in status(report, "flaky").error
    assert (report.revision, report.attempted_revision) == (1, 2)
    assert rec.intervals == [5, 20]
    flaky.fail = False
    report = await applier.apply(desired(2, interval=20))  # the controller resends: agent is behind
    assert report.revision == 2
    assert rec.intervals == [5, 20]  # the agent part did not change again
    assert len(flaky.applied) == 2


async def test_absent_part_restores_defaults(tmp_path, rec):
    applier = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    await applier.apply(desired(1))
    report = await applier.apply(agent_pb2.DesiredState(revision=2))
    assert status(report, "agent").state == ABSENT
    assert status(report, "agent").config_hash == ""
    assert (rec.intervals[-1], rec.levels[-1]) == (10, "info")
    assert report.revision == 2


async def test_unset_fields_mean_config_defaults(tmp_path, rec):
    applier = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    report = await applier.apply(
        agent_pb2.DesiredState(revision=1, agent=agent_pb2.AgentSettings(log_level="warning"))
    )
    assert status(report, "agent").state == OK
    assert (rec.intervals, rec.levels) == ([10], ["warning"])


async def test_stored_state_is_reapplied_at_startup(tmp_path, rec):
    first = StateApplier([settings_component(Recorder())], AppliedStateStore(tmp_path))
    await first.apply(desired(4, interval=30, level="error"))

    restarted = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    report = await restarted.load_and_apply()
    assert restarted.applied_revision == 4
    assert (report.revision, status(report, "agent").state) == (4, OK)
    assert (rec.intervals, rec.levels) == ([30], ["error"])
    # The controller resends the same revision after Hello: nothing is touched.
    await restarted.apply(desired(4, interval=30, level="error"))
    assert rec.intervals == [30]


async def test_no_stored_state_means_nothing_to_apply(tmp_path, rec):
    applier = StateApplier([settings_component(rec)], AppliedStateStore(tmp_path))
    assert await applier.load_and_apply() is None
    assert applier.applied_revision == 0
    assert rec.intervals == []


def test_part_hash_is_deterministic_and_empty_for_absent():
    assert part_hash(None) == ""
    assert part_hash(desired(1).agent) == part_hash(desired(2).agent)
    assert part_hash(desired(1).agent) != part_hash(desired(1, interval=6).agent)


def test_duplicate_component_names_are_refused(tmp_path, rec):
    with pytest.raises(ValueError):
        StateApplier([settings_component(rec), settings_component(rec)], AppliedStateStore(tmp_path))


# -- retries -------------------------------------------------------------------------------------------------


class BrokenSettings(FlakyComponent):
    """Fails with ValueError: the part itself is wrong (like `v2ray -test` refusing a config)."""

    name = "broken"

    async def apply(self, part):
        raise ValueError("V2Ray rejected the configuration")


async def test_a_transient_failure_is_retried_with_backoff_until_it_applies(tmp_path, rec, caplog):
    flaky = FlakyComponent()
    store = AppliedStateStore(tmp_path)
    applier = StateApplier([settings_component(rec), flaky], store)
    assert applier.retry_delay() is None and await applier.retry() is None  # nothing failed: nothing to do
    await applier.apply(desired(1))
    flaky.fail = True
    report = await applier.apply(desired(2, interval=20))
    assert status(report, "flaky").state == FAILED and report.revision == 1
    assert applier.retry_delay() == 2.0
    # Still failing: each retry doubles the delay, up to the cap.
    delays = []
    for _ in range(7):
        report = await applier.retry()
        assert (report.attempted_revision, status(report, "flaky").state) == (2, FAILED)
        delays.append(applier.retry_delay())
    assert delays == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert "retrying desired state revision 2 (attempt 8) after: flaky: v2ray -test said no" in caplog.text
    # A new revision starts again from the shortest delay.
    await applier.apply(desired(3, interval=20))
    assert applier.retry_delay() == 2.0
    # It passes: the report says so, the revision moves on, nothing is left to retry.
    flaky.fail = False
    report = await applier.retry()
    assert (report.revision, status(report, "flaky").state) == (3, OK)
    assert applier.last_report == report and applier.applied_revision == 3 and store.load().revision == 3
    assert applier.retry_delay() is None and await applier.retry() is None
    assert rec.intervals == [5, 20]  # the part that applied the first time was not applied again


async def test_a_part_that_cannot_be_applied_is_not_retried(tmp_path, rec):
    applier = StateApplier([settings_component(rec), BrokenSettings()], AppliedStateStore(tmp_path))
    report = await applier.apply(desired(1))
    assert status(report, "broken").state == FAILED
    assert applier.retry_delay() is None  # ValueError: trying again cannot help; the next state will tell
    report = await applier.apply(desired(2, interval=3601))  # validate() refuses it: the same
    assert status(report, "agent").state == FAILED and applier.retry_delay() is None


async def test_a_stored_state_that_fails_at_startup_is_retried(tmp_path, rec):
    await StateApplier([settings_component(Recorder()), FlakyComponent()], AppliedStateStore(tmp_path)).apply(
        desired(4, interval=30)
    )
    flaky = FlakyComponent()
    flaky.fail = True  # e.g. V2Ray cannot start yet at boot
    restarted = StateApplier([settings_component(rec), flaky], AppliedStateStore(tmp_path), retry_base=0.5)
    report = await restarted.load_and_apply()
    assert status(report, "flaky").state == FAILED and restarted.retry_delay() == 0.5
    flaky.fail = False
    report = await restarted.retry()
    assert (report.revision, status(report, "flaky").state) == (4, OK) and len(flaky.applied) == 1
