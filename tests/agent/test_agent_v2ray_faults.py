"""The V2Ray driver under faults, against the real `v2ray` binary: transient API failures are retried, a
structure that cannot start neither blocks user changes nor restarts V2Ray on every revision, traffic counters
are read before every stop, and V2Ray's live users stay the truth when config.json cannot be written."""

from __future__ import annotations

import asyncio
import errno
import socket
import time

import pytest

from agent.drivers import v2ray as driver
from agent.drivers.v2ray import V2RayComponent
from agent.state import AppliedStateStore, StateApplier
from agent.v2ray.api import ApiError, V2RayApi
from protos import agent_pb2
from tests.agent import test_agent_v2ray_live as live
from tests.agent.test_agent_v2ray_live import HEADER_SLACK, MB, Node, new_uuid, refused, running_users, works
from tests.v2ray_lab import v2ray_binary

# The live tests' fixtures: V2RayComponents on tmp_path (stopped afterwards), an HTTP server, the live log lines.
make, web, events = live.make, live.web, live.events

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(v2ray_binary() is None,
                       reason="needs the v2ray binary (Debian package v2ray, or $VPNFLEET_V2RAY)"),
]

OK = agent_pb2.ComponentStatus.OK
FAILED = agent_pb2.ComponentStatus.FAILED


def desired(revision: int, node: Node) -> agent_pb2.DesiredState:
    return agent_pb2.DesiredState(revision=revision, v2ray=node.part())


def v2ray_status(report: agent_pb2.AppliedReport) -> agent_pb2.ComponentStatus:
    return next(c for c in report.components if c.name == "v2ray")


def downlink(entries: list[agent_pb2.UserTraffic], email: str) -> int:
    return sum(e.downlink_bytes for e in entries if e.email == email)


async def alice_on_vmess(make) -> tuple[Node, int, V2RayComponent]:
    """A started V2Ray with one VMess inbound (its port is returned) and one user, alice."""
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    return node, vm, component


async def alice_and_bob_applied(make, tmp_path) -> tuple[Node, int, V2RayComponent, StateApplier]:
    """A V2Ray with one VMess inbound (its port is returned) and users alice and bob, applied as revision 1
    through a StateApplier (which retries)."""
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    applier = StateApplier([component], AppliedStateStore(tmp_path))
    assert v2ray_status(await applier.apply(desired(1, node))).state == OK
    return node, vm, component, applier


async def unreadable_counters(self, pattern, reset):
    """Stands in for V2RayApi.query_stats when the counters cannot be read."""
    raise ApiError("reading V2Ray's counters: injected")


# -- A: a failed apply is retried ------------------------------------------------------------------------


async def test_a_block_that_failed_transiently_is_applied_by_the_retry(make, web, monkeypatch, tmp_path):
    node, vm, component, applier = await alice_and_bob_applied(make, tmp_path)
    pid, url = component.pid, web.url(100_000)

    async def timing_out(self, tag, email):
        raise ApiError(f"removing user {email!r} from inbound {tag!r}: Deadline Exceeded")

    real_remove = V2RayApi.remove_user
    monkeypatch.setattr(V2RayApi, "remove_user", timing_out)
    bob = node.users.pop("bob")  # blocked
    report = await applier.apply(desired(2, node))
    assert v2ray_status(report).state == FAILED and "Deadline Exceeded" in v2ray_status(report).error
    assert await works("vmess", vm, bob, url)  # the old users still run
    assert applier.retry_delay() == 2.0  # the controller will not send revision 2 again: the agent retries

    monkeypatch.setattr(V2RayApi, "remove_user", real_remove)
    report = await applier.retry()
    assert (report.revision, v2ray_status(report).state) == (2, OK) and applier.retry_delay() is None
    assert await refused("vmess", vm, bob, url)
    assert await works("vmess", vm, node.users["alice"], url)
    assert (component.pid, component.starts) == (pid, 1)


# -- B: a structure that does not start ------------------------------------------------------------------


async def test_a_structure_that_cannot_start_does_not_hold_up_users_or_restart_every_revision(
    make, web, monkeypatch
):
    monkeypatch.setattr(driver, "STRUCTURE_RETRY_BASE_SECONDS", 3.0, raising=False)
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make(start_timeout=10)
    await component.apply(node.part())
    url = web.url(100_000)

    with socket.socket() as squatter:  # `v2ray -test` passes; V2Ray cannot bind this port
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        vl = node.inbound("vl", "vless", squatter.getsockname()[1])
        bob = node.users.pop("bob")  # the same revision blocks bob
        with pytest.raises(RuntimeError, match="address already in use.*users were applied.*tried again in 3 s"):
            await component.apply(node.part())
        failed_at = time.monotonic()
        assert component.starts == 3  # stop, failed start, the last good one again
        pid = component.pid

        # Next revisions (subscriber changes) while the structure is still desired: applied hot, no restart.
        node.users["carol"] = new_uuid()
        with pytest.raises(RuntimeError, match="address already in use.*users were applied"):
            await component.apply(node.part())
        assert (component.pid, component.starts) == (pid, 3)
        assert await refused("vmess", vm, bob, url)
        assert await works("vmess", vm, node.users["carol"], url)
        assert await works("vmess", vm, node.users["alice"], url)

    # The port is free and the backoff has passed: the next apply (the engine's retry) tries it again.
    await asyncio.sleep(max(0.0, failed_at + 3.2 - time.monotonic()))
    await component.apply(node.part())
    assert component.starts == 4
    assert await works("vless", vl, node.users["carol"], url)
    assert await refused("vless", vl, bob, url)


# -- C: counters are read before every stop --------------------------------------------------------------


async def test_counters_survive_a_restart_that_moves_the_api_port(make, web):
    node, vm, component = await alice_on_vmess(make)
    old_api = component.api_port
    assert await works("vmess", vm, node.users["alice"], web.url(MB))

    node.inbound("vl", "vless", old_api)  # a new inbound wants the API port: V2Ray's API moves
    await component.apply(node.part())
    assert component.starts == 2 and component.api_port != old_api
    assert MB <= downlink(await component.take_traffic(1), "alice") < MB + HEADER_SLACK


async def test_counters_of_a_config_that_served_and_then_failed_are_kept(make, web, monkeypatch):
    node, vm, component = await alice_on_vmess(make)
    real_wait_up = V2RayComponent._wait_up
    injected = []

    async def serves_then_fails(self, child, spec, port):
        await real_wait_up(self, child, spec, port)
        if not injected:  # the new config: it serves a download, then counts as not come up
            injected.append(child.pid)
            assert await works("vmess", vm, node.users["alice"], web.url(MB))
            raise RuntimeError("injected: did not come up")

    monkeypatch.setattr(V2RayComponent, "_wait_up", serves_then_fails)
    node.log_level = "info"
    with pytest.raises(RuntimeError, match="injected"):
        await component.apply(node.part())
    assert component.starts == 3 and component.pid not in (None, injected[0])
    assert MB <= downlink(await component.take_traffic(1), "alice") < MB + HEADER_SLACK


async def test_a_rollback_that_cannot_read_the_counters_says_so(make, monkeypatch, events):
    node, _, component = await alice_on_vmess(make)
    real_wait_up, real_query = V2RayComponent._wait_up, V2RayApi.query_stats
    broken: list[bool] = []

    async def fails_after_coming_up(self, child, spec, port):
        await real_wait_up(self, child, spec, port)
        if not broken:
            broken.append(True)  # from now on its API cannot be read either
            raise RuntimeError("injected: did not come up")

    async def query(self, pattern, reset):
        if broken:
            raise ApiError("reading V2Ray's counters: injected")
        return await real_query(self, pattern, reset)

    monkeypatch.setattr(V2RayComponent, "_wait_up", fails_after_coming_up)
    monkeypatch.setattr(V2RayApi, "query_stats", query)
    node.log_level = "info"
    with pytest.raises(RuntimeError, match="injected: did not come up"):
        await component.apply(node.part())
    assert component.starts == 3 and component.pid is not None  # the rollback went on
    errors = [m for level, source, m in events if source == "v2ray" and level == "error"]
    assert any("counters could not be read before stopping it" in m and "injected" in m for m in errors)


async def test_a_planned_restart_waits_until_the_counters_can_be_read(make, monkeypatch):
    node, _, component = await alice_on_vmess(make)
    pid = component.pid

    real_query = V2RayApi.query_stats
    monkeypatch.setattr(V2RayApi, "query_stats", unreadable_counters)
    node.log_level = "info"
    with pytest.raises(RuntimeError, match="not restarted: its traffic counters could not be read"):
        await component.apply(node.part())
    assert (component.pid, component.starts) == (pid, 1)  # still serving, counters still in V2Ray
    monkeypatch.setattr(V2RayApi, "query_stats", real_query)
    await component.apply(node.part())  # the retry
    assert component.starts == 2


async def test_a_v2ray_whose_api_no_longer_answers_is_restarted_anyway(make, monkeypatch, events):
    node, _, component = await alice_on_vmess(make)
    pid = component.pid

    async def wedged(self):
        return False

    monkeypatch.setattr(V2RayApi, "query_stats", unreadable_counters)
    monkeypatch.setattr(V2RayComponent, "_api_answers", wedged)
    node.log_level = "info"
    # Holding the restart would keep a wedged V2Ray forever: it is replaced, and the lost counters reported.
    await component.apply(node.part())
    assert component.pid != pid and component.starts == 2
    errors = [m for level, source, m in events if source == "v2ray" and level == "error"]
    assert any("counters could not be read before stopping it" in m for m in errors)


# -- D: config.json cannot be written -------------------------------------------------------------------


async def test_removed_users_stay_removed_when_config_json_cannot_be_written(make, web, monkeypatch, tmp_path):
    node, vm, component, applier = await alice_and_bob_applied(make, tmp_path)
    url = web.url(100_000)
    real_write = driver.write_atomic

    def disk_full(path, data, mode=0o600):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(driver, "write_atomic", disk_full)
    bob = node.users.pop("bob")
    report = await applier.apply(desired(2, node))
    assert v2ray_status(report).state == FAILED and "No space left on device" in v2ray_status(report).error
    assert await refused("vmess", vm, bob, url)
    # V2Ray runs the new users: drift repair keeps it that way instead of putting bob back.
    assert await component.reconcile() == 0
    assert await refused("vmess", vm, bob, url)

    monkeypatch.setattr(driver, "write_atomic", real_write)
    report = await applier.retry()
    assert (report.revision, v2ray_status(report).state) == (2, OK)
    assert running_users(tmp_path) == node.users and component.starts == 1
    assert await works("vmess", vm, node.users["alice"], url)
