"""The V2Ray driver against the real `v2ray` binary, with real traffic on 127.0.0.1.

Every test runs V2Ray from its own state directory on random free ports, downloads through real V2Ray
clients (tests/v2ray_lab.py) from the internet host, and stops every process it started. A user V2Ray
refuses shows as a failed download: over VMess the connection hangs until the client's timeout
(anti-probing), over VLESS the reply is empty; so the failing checks use short timeouts.

VLESS is never served in clear (agent.v2ray.spec), so a "vless" inbound here is profile vless-ws-tls with
one self-signed certificate for the session (tests/v2ray_lab.py: shared_certificate), and a "vless" client
speaks WebSocket over TLS to it; "vmess" is plain TCP. Node, works() and refused() take a core too: the
same helpers drive Xray in test_agent_xray_live.py (clients of the node's own core: a V2Ray 4.34 VLESS
client gets no answer from Xray 26's VLESS inbound).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from agent import dataplane_user
from agent.drivers import v2ray as driver
from agent.drivers.v2ray import V2RayComponent
from agent.v2ray import config as v2config
from agent.v2ray import process
from agent.v2ray.api import ApiError, V2RayApi
from agent.v2ray.process import ConfigRejected
from agent.v2ray.spec import spec_from_proto
from protos import agent_pb2
from tests.v2ray_lab import (ClientTransport, V2RayClient, can_fetch, free_port, shared_certificate, v2ray_binary,
                             xray_binary)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(v2ray_binary() is None,
                       reason="needs the v2ray binary (Debian package v2ray, or $VPNFLEET_V2RAY)"),
]

MB = 1_000_000
#: What V2Ray counts on top of a body: the HTTP response headers (FACTS: 1 MB over VMess -> 1,000,205 bytes).
HEADER_SLACK = 1_000
#: How long a refused client may take to fail (VMess hangs until then).
REFUSED_TIMEOUT = 2.0


def new_uuid() -> str:
    return str(uuid.uuid4())


#: The profile a test inbound of each protocol gets unless it names one: VLESS only with TLS (or REALITY).
DEFAULT_PROFILES = {"vmess": "", "vless": "vless-ws-tls"}


def tls_settings() -> agent_pb2.TlsSettings:
    """The session's certificate as a *-ws-tls inbound's tls settings."""
    cert = shared_certificate()
    return agent_pb2.TlsSettings(certificate_file=cert.certificate_file, key_file=cert.key_file,
                                 server_name=cert.server_name)


def client_transport(protocol: str) -> ClientTransport:
    """How a client reaches an inbound Node.inbound() made for protocol without naming a profile."""
    profile = DEFAULT_PROFILES[protocol]
    if not profile:
        return ClientTransport()
    cert = shared_certificate()
    return ClientTransport(profile=profile, server_name=cert.server_name, certificate_sha256=cert.sha256)


class Node:
    """The desired part of one test's V2Ray, built up step by step like the controller does."""

    def __init__(self, core: str = "") -> None:
        self.inbounds: dict[str, agent_pb2.V2RayInbound] = {}
        self.users: dict[str, str] = {}
        self.log_level = ""
        self.core = core

    def inbound(self, tag: str, protocol: str, port: int | None = None, profile: str | None = None,
                **settings) -> int:
        """Add (or replace) inbound tag; profile None: DEFAULT_PROFILES (ws-tls with the session's certificate)."""
        port = port or free_port()
        profile = DEFAULT_PROFILES[protocol] if profile is None else profile
        if profile.endswith("-ws-tls"):
            settings.setdefault("tls", tls_settings())
        self.inbounds[tag] = agent_pb2.V2RayInbound(tag=tag, protocol=protocol, port=port, listen="127.0.0.1",
                                                    profile=profile, **settings)
        return port

    def port(self, tag: str) -> int:
        return self.inbounds[tag].port

    def part(self) -> agent_pb2.V2RayConfig:
        return agent_pb2.V2RayConfig(
            inbounds=list(self.inbounds.values()),
            users=[agent_pb2.V2RayUser(email=e, uuid=u) for e, u in self.users.items()],
            log_level=self.log_level,
            core=self.core,
        )


@pytest.fixture(scope="module")
def web(internet):
    """Where the test subscribers download from: the internet host (loopback is out of a tunnel's reach)."""
    return internet


@pytest.fixture
def events() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
async def make(tmp_path: Path, events) -> Callable[..., V2RayComponent]:
    """Makes V2RayComponents on tmp_path (several = agent restarts); stops all their V2Rays afterwards."""
    made: list[V2RayComponent] = []

    def factory(**kwargs) -> V2RayComponent:
        kwargs.setdefault("xray_binary", xray_binary())  # found even where the venv's bin is not on PATH
        kwargs.setdefault("reconcile_seconds", 3600)
        kwargs.setdefault("supervise_seconds", 0.1)
        component = V2RayComponent(tmp_path, log_push=lambda *line: events.append(line), **kwargs)
        made.append(component)
        return component

    yield factory
    for component in made:
        await component.close()
    if made:
        await made[-1].apply(None)
    for pid, ticks in process.stray_processes(str(tmp_path / "v2ray" / "config.json")):
        process.terminate(pid, ticks)  # only if a test failed half-way


async def works(protocol: str, port: int, user_uuid: str, url: str, timeout: float = 10.0,
                transport: ClientTransport | None = None, core: str = "v2ray") -> bool:
    """Can a client (of core) with this uuid download url through the inbound? transport None: the one
    Node.inbound() gives protocol by default."""
    transport = client_transport(protocol) if transport is None else transport
    with V2RayClient(protocol, "127.0.0.1", port, user_uuid, transport=transport, core=core) as client:
        return await asyncio.to_thread(can_fetch, client.socks_port, url, timeout)


async def refused(protocol: str, port: int, user_uuid: str, url: str, transport: ClientTransport | None = None,
                  core: str = "v2ray") -> bool:
    return not await works(protocol, port, user_uuid, url, REFUSED_TIMEOUT, transport, core)


async def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    """predicate's first truthy value, polled until timeout."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def running_users(tmp_path: Path) -> dict[str, str]:
    spec, _port = v2config.parse((tmp_path / "v2ray" / "config.json").read_bytes())
    return dict(spec.users)


async def test_fresh_apply_serves_both_protocols_to_every_user(make, web, tmp_path):
    node = Node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    assert "v2ray" in component.capabilities  # and "xray" where that binary is there too
    await component.apply(node.part())

    assert component.pid is not None and component.starts == 1 and component.api_port not in (vm, vl)
    for email, user_uuid in node.users.items():
        assert await works("vmess", vm, user_uuid, web.url(100_000)), f"{email} over VMess"
        assert await works("vless", vl, user_uuid, web.url(100_000)), f"{email} over VLESS"
    state = tmp_path / "v2ray"
    if os.geteuid() == 0:  # V2Ray runs as the data-plane user: it may read its config, nothing else of ours
        group = grp.getgrgid(state.stat().st_gid).gr_name
        assert state.stat().st_mode & 0o777 == 0o750 and group == dataplane_user.DEFAULT_USER
        for name in ("config.json", "last_good.json"):
            assert (state / name).stat().st_mode & 0o777 == 0o640, name
        assert (state / "process.json").stat().st_mode & 0o777 == 0o600
    else:
        assert state.stat().st_mode & 0o777 == 0o700
        for name in ("config.json", "last_good.json", "process.json"):
            assert (state / name).stat().st_mode & 0o777 == 0o600, name
    assert running_users(tmp_path) == node.users
    # The process outlives the agent: its own session, not the agent's.
    assert os.getsid(component.pid) == component.pid != os.getsid(0)


async def test_users_change_without_a_restart(make, web, tmp_path):
    node = Node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    pid = component.pid
    url = web.url(100_000)

    # Hot add: works at once, nobody restarted.
    node.users["carol"] = new_uuid()
    await component.apply(node.part())
    assert await works("vmess", vm, node.users["carol"], url) and await works("vless", vl, node.users["carol"], url)
    assert (component.pid, component.starts) == (pid, 1)

    # Remove: that user is refused on both protocols, the others keep working.
    bob = node.users.pop("bob")
    await component.apply(node.part())
    assert await refused("vmess", vm, bob, url) and await refused("vless", vl, bob, url)
    assert await works("vmess", vm, node.users["alice"], url) and await works("vless", vl, node.users["carol"], url)
    assert (component.pid, component.starts) == (pid, 1)

    # Rotate: same email, new uuid; the old one stops working.
    old = node.users["alice"]
    node.users["alice"] = new_uuid()
    await component.apply(node.part())
    assert await refused("vmess", vm, old, url) and await refused("vless", vl, old, url)
    assert await works("vmess", vm, node.users["alice"], url) and await works("vless", vl, node.users["alice"], url)
    assert (component.pid, component.starts) == (pid, 1)

    # config.json follows, so a V2Ray started from disk has the right users; applying it again touches nothing.
    assert running_users(tmp_path) == node.users
    config = tmp_path / "v2ray" / "config.json"
    before = config.stat().st_mtime_ns
    await component.apply(node.part())
    assert config.stat().st_mtime_ns == before and (component.pid, component.starts) == (pid, 1)


async def test_a_structural_change_restarts_once_and_keeps_the_users(make, web):
    node = Node()
    node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    api_port = component.api_port

    new_vm = node.inbound("vm", "vmess")  # another port
    vl = node.inbound("vl", "vless")  # and a new inbound
    await component.apply(node.part())
    assert component.starts == 2 and component.api_port == api_port
    for user_uuid in node.users.values():
        assert await works("vmess", new_vm, user_uuid, web.url(100_000))
        assert await works("vless", vl, user_uuid, web.url(100_000))


async def test_a_config_v2ray_rejects_leaves_the_running_one_alone(make, web, tmp_path, monkeypatch):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    pid, config = component.pid, (tmp_path / "v2ray" / "config.json").read_bytes()

    # The driver's own checks pass (a new inbound, valid users); V2Ray's `-test` does not (injected: the
    # renderer emits a protocol V2Ray does not know, and a valid UUID V2Ray's message must not leak).
    render = v2config.render

    def broken(spec, *args):
        rendered = render(spec, *args)
        rendered["inbounds"][-1]["protocol"] = "vmess2"
        return rendered

    monkeypatch.setattr(v2config, "render", broken)
    node.inbound("vl", "vless")
    with pytest.raises(ConfigRejected, match="V2Ray rejected the configuration") as caught:
        await component.apply(node.part())
    assert node.users["alice"] not in str(caught.value)
    assert component.pid == pid and component.starts == 1
    assert (tmp_path / "v2ray" / "config.json").read_bytes() == config
    assert not (tmp_path / "v2ray" / "candidate.json").exists()
    assert await works("vmess", vm, node.users["alice"], web.url(100_000))


async def test_a_config_that_does_not_come_up_is_rolled_back(make, web, tmp_path):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make(start_timeout=10)
    await component.apply(node.part())
    good = (tmp_path / "v2ray" / "last_good.json").read_bytes()

    # `v2ray -test` does not bind ports: a port held by someone else only fails when V2Ray starts.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        node.inbound("vl", "vless", squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use"):
            await component.apply(node.part())
    # The old config runs again (stop, failed start, start of the last good one).
    assert component.pid is not None and component.starts == 3
    assert (tmp_path / "v2ray" / "config.json").read_bytes() == good
    assert await works("vmess", vm, node.users["alice"], web.url(100_000))


async def test_a_v2ray_that_dies_is_restarted_from_the_last_good_config(make, web, events):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    node.users["bob"] = new_uuid()  # a user change, so "last good" is more than the first start
    await component.apply(node.part())
    pid = component.pid

    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: component.pid not in (None, pid), 15, "the supervisor to restart V2Ray")
    assert component.starts == 2
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))
    messages = [(level, message) for level, source, message in events if source == "v2ray"]
    assert any(level == "error" and f"pid {pid}" in message and "exited" in message for level, message in messages)


async def test_apply_none_stops_only_our_v2ray(make, tmp_path):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    pid = component.pid
    with V2RayClient("vmess", "127.0.0.1", vm, node.users["alice"]) as other:  # someone else's v2ray
        await component.apply(None)
        assert component.pid is None and process.start_ticks(pid) is None
        assert other.proc.poll() is None
    assert not (tmp_path / "v2ray" / "config.json").exists()
    assert not (tmp_path / "v2ray" / "process.json").exists()
    await component.apply(None)  # idempotent


async def test_a_new_agent_process_adopts_the_running_v2ray(make, web, events, caplog):
    caplog.set_level(logging.INFO, logger=driver.__name__)
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    first = make()
    await first.apply(node.part())
    pid = first.pid
    await first.close()  # the agent "exits": V2Ray keeps running

    second = make()
    await second.apply(node.part())
    assert second.pid == pid and second.starts == 0
    assert any("adopted the running V2Ray" in message for _l, _s, message in events)
    # Adopted means driven: a user change goes through its API.
    node.users["bob"] = new_uuid()
    await second.apply(node.part())
    assert second.pid == pid and await works("vmess", vm, node.users["bob"], web.url(100_000))
    await second.close()

    # The agent comes back after V2Ray died too: started once, from what the agent had applied.
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: process.start_ticks(pid) is None, 5, "V2Ray to die")
    third = make()
    await third.apply(node.part())
    assert third.starts == 1 and third.pid not in (None, pid)
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))


async def test_traffic_is_counted_per_user_exactly_once(make, web):
    node = Node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())

    assert await works("vmess", vm, node.users["alice"], web.url(MB))
    taken = {e.email: e for e in await component.take_traffic(1)}
    assert set(taken) == {"alice"}  # bob moved nothing: not reported
    assert MB <= taken["alice"].downlink_bytes < MB + HEADER_SLACK
    assert 0 < taken["alice"].uplink_bytes < HEADER_SLACK
    component.spooled(1)
    assert await component.take_traffic(2) == []  # read-and-reset: nothing twice

    # Bytes counted before a restart (structural change) are not lost with V2Ray's counters.
    assert await works("vless", vl, node.users["bob"], web.url(MB))
    node.log_level = "info"
    await component.apply(node.part())
    assert component.starts == 2
    taken = {e.email: e for e in await component.take_traffic(3)}
    assert set(taken) == {"bob"} and MB <= taken["bob"].downlink_bytes < MB + HEADER_SLACK


async def test_taken_traffic_survives_an_agent_crash(make, web):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())

    # Crash after batch 5 was spooled but before the source heard of it: already delivered, dropped.
    assert await works("vmess", vm, node.users["alice"], web.url(MB))
    assert sum(e.downlink_bytes for e in await component.take_traffic(5)) >= MB
    restarted = make()
    restarted.spooled(5)  # MetricsLoop at start: the spool's last seq
    assert await restarted.take_traffic(6) == []

    # Crash after taking for batch 7, before it reached the spool (ends at 6): delivered once, by batch 7.
    assert await works("vmess", vm, node.users["alice"], web.url(MB))
    assert sum(e.downlink_bytes for e in await restarted.take_traffic(7)) >= MB
    again = make()
    again.spooled(6)
    delivered = await again.take_traffic(7)
    assert [e.email for e in delivered] == ["alice"] and MB <= delivered[0].downlink_bytes < MB + HEADER_SLACK
    again.spooled(7)
    assert await make().take_traffic(8) == []


async def test_drift_is_repaired(make, web, events):
    node = Node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    url = web.url(100_000)
    assert await component.reconcile() == 0  # in sync: nothing to do

    intruder = new_uuid()
    async with V2RayApi(component.api_port) as api:  # behind the driver's back
        assert await api.remove_user("vm", "alice")
        assert await api.add_user("vl", "vless", "mallory", intruder)
    assert await refused("vmess", vm, node.users["alice"], url)
    assert await works("vless", vl, intruder, url)  # mallory moves traffic: V2Ray's counters show it

    assert await component.reconcile() == 2
    assert await works("vmess", vm, node.users["alice"], url)
    assert await refused("vless", vl, intruder, url)
    warnings = [m for level, source, m in events if level == "warning" and source == "v2ray"]
    assert any("alice" in m and "added again" in m for m in warnings)
    assert any("mallory" in m and "removed" in m for m in warnings)
    assert not any(intruder in m or node.users["alice"] in m for _l, _s, m in events)  # no credentials
    assert component.starts == 1


async def test_drift_repair_runs_on_its_own(make, web):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make(reconcile_seconds=0.5)
    await component.apply(node.part())
    async with V2RayApi(component.api_port) as api:
        assert await api.remove_user("vm", "alice")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with V2RayApi(component.api_port) as api:
            if not await api.add_user("vm", "vmess", "alice", node.users["alice"]):
                break  # "already exists": the repair put it back
            assert await api.remove_user("vm", "alice")  # our probe added it: take it out again
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the periodic drift repair did not re-add the user")
    assert await works("vmess", vm, node.users["alice"], web.url(100_000))


async def test_a_failed_user_change_is_undone(make, web, monkeypatch):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    url = web.url(100_000)

    real_add = V2RayApi.add_user

    async def failing_add(self, tag, protocol, email, user_uuid, flow=""):
        if email == "zed":
            await asyncio.sleep(0.2)  # let the other calls of the apply go first
            raise ApiError("injected failure")
        return await real_add(self, tag, protocol, email, user_uuid, flow=flow)

    monkeypatch.setattr(V2RayApi, "add_user", failing_add)
    wanted = {"alice": node.users["alice"], "carol": new_uuid(), "zed": new_uuid()}  # bob removed
    bad = agent_pb2.V2RayConfig(inbounds=list(node.inbounds.values()),
                                users=[agent_pb2.V2RayUser(email=e, uuid=u) for e, u in wanted.items()])
    with pytest.raises(RuntimeError, match="injected failure.*undone"):
        await component.apply(bad)
    monkeypatch.setattr(V2RayApi, "add_user", real_add)

    assert await works("vmess", vm, node.users["bob"], url)  # removed, then put back
    assert await refused("vmess", vm, wanted["carol"], url)  # added, then taken out
    assert component.starts == 1
    assert await component.reconcile() == 0  # V2Ray is exactly as before the failed apply


async def test_v2ray_logs_become_live_log_lines_without_credentials(make, web, events, caplog):
    """With the access log switched on: its lines become live log lines, without ids or source addresses."""
    caplog.set_level(logging.DEBUG, logger=driver.__name__)
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    node.log_level = "info"
    component = make()
    part = node.part()
    part.access_log = True  # off by default (every subscriber's source and destinations): on for debugging
    await component.apply(part)
    assert await works("vmess", vm, node.users["alice"], web.url(1000))

    def access_line() -> str | None:
        return next((m for level, source, m in events if source == "v2ray" and level == "info" and "email: alice" in m),
                    None)

    line = await wait_until(access_line, 5, "the access log line of alice's download")
    # the subscriber's source address is masked unless access_log_addresses; the destination is kept
    assert "127.0.0.1:" not in line.split(" accepted ")[0] and "203.0.113.10:8080" in line
    assert any(level == "warning" and "V2Ray 4" in m and "started" in m for level, _s, m in events)
    assert not any(node.users["alice"] in m for _l, _s, m in events)


async def test_api_answers_map_to_idempotent_results(make):
    node = Node()
    node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    async with V2RayApi(component.api_port) as api:
        assert await api.add_user("vm", "vmess", "ALICE", new_uuid()) is False  # emails ignore case
        assert await api.remove_user("vm", "nobody") is False
        with pytest.raises(ApiError, match="handler not found"):
            await api.remove_user("no-such-inbound", "alice")
        with pytest.raises(ApiError, match="handler not found"):
            await api.add_user("no-such-inbound", "vmess", "bob", new_uuid())


def test_check_config_reports_v2ray_s_reason_without_credentials(tmp_path):
    secret = new_uuid()
    spec = spec_from_proto(agent_pb2.V2RayConfig(
        inbounds=[agent_pb2.V2RayInbound(tag="vl", profile="vless-ws-tls", port=free_port(), tls=tls_settings())],
        users=[agent_pb2.V2RayUser(email="alice", uuid=secret)]))
    rendered = v2config.render(spec, free_port(), str(tmp_path / "a.log"), str(tmp_path / "e.log"))
    good = tmp_path / "good.json"
    good.write_bytes(v2config.dumps(rendered))
    process.check_config(v2ray_binary(), good)
    rendered["inbounds"][1]["settings"]["clients"][0]["id"] = secret[:20]  # V2Ray echoes an id this short
    bad = tmp_path / "bad.json"
    bad.write_bytes(v2config.dumps(rendered))
    with pytest.raises(ConfigRejected, match=r"exit 23.*invalid UUID") as caught:
        process.check_config(v2ray_binary(), bad)
    assert secret[:20] not in str(caught.value)


async def test_a_switch_to_a_core_that_is_not_installed_still_applies_the_users(make, web):
    node = Node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make(xray_binary="/nonexistent/xray")
    assert component.capabilities == ("v2ray",)
    await component.apply(node.part())
    pid = component.pid

    node.core = "xray"
    node.users["bob"] = new_uuid()  # the same revision adds bob: he must not wait for Xray to be installed
    with pytest.raises(RuntimeError, match=r"Xray is not installed: '/nonexistent/xray' not found "
                                           r"\(set \$VPNFLEET_XRAY\).*users were applied") as caught:
        await component.apply(node.part())
    assert not isinstance(caught.value, ConfigRejected)  # retried: installing Xray fixes it
    assert (component.pid, component.starts) == (pid, 1)
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))
