"""The driver's core-independent behaviour on the real Xray-core binary, and switching cores.

The same Node/works()/make helpers as the V2Ray tests (test_agent_v2ray_live.py), with core "xray" and Xray
clients: a fresh apply, users changed without a restart (REALITY Vision users hot-added with their flow),
usage counted exactly per user, drift repair, adoption by a new agent process, a dead Xray restarted from
the last good config; then a switch V2Ray -> Xray (one restart, users and counted bytes kept) and back, and
switches that fail: one the agent refuses (REALITY on V2Ray) leaves Xray untouched, one that does not come
up (a taken port) is rolled back to the last good config and its core.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from pathlib import Path

import pytest

from agent.drivers import v2ray as driver
from agent.v2ray import process
from agent.v2ray.api import ApiError, V2RayApi
from agent.v2ray.core import XRAY
from tests.agent import test_agent_v2ray_live as live
from tests.agent.test_agent_v2ray_live import HEADER_SLACK, MB, Node, new_uuid, running_users, wait_until
from tests.v2ray_lab import (ClientTransport, TlsTarget, make_certificate, reality_keys, v2ray_binary,
                             xray_binary)

make, web, events = live.make, live.web, live.events

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(xray_binary() is None,
                       reason="needs the xray binary (`make xray` builds it into .venv/bin, or $VPNFLEET_XRAY)"),
]

#: The REALITY target's name: what clients ask for and the inbound's serverNames.
TARGET_NAME = "www.example.test"
SHORT_ID = "0123abcd"


async def works(protocol: str, port: int, user_uuid: str, url: str, timeout: float = 10.0,
                transport: ClientTransport | None = None) -> bool:
    """live.works() with an Xray client."""
    return await live.works(protocol, port, user_uuid, url, timeout, transport, core="xray")


async def refused(protocol: str, port: int, user_uuid: str, url: str,
                  transport: ClientTransport | None = None) -> bool:
    return not await works(protocol, port, user_uuid, url, live.REFUSED_TIMEOUT, transport)


@pytest.fixture
def target(tmp_path: Path):
    """A TLS 1.3 server for REALITY to borrow from; its certificate for TARGET_NAME."""
    with TlsTarget(make_certificate(tmp_path / "target", TARGET_NAME)) as server:
        yield server


class Reality:
    """A REALITY inbound's settings and the client transport that matches them."""

    def __init__(self, target: TlsTarget) -> None:
        self.private_key, self.public_key = reality_keys()
        self.settings = {"reality": {"private_key": self.private_key, "short_ids": ["", SHORT_ID],
                                     "dest": target.dest, "server_names": [TARGET_NAME]}}
        self.client = ClientTransport(profile="vless-reality-vision", server_name=TARGET_NAME,
                                      public_key=self.public_key, short_id=SHORT_ID)


def xray_node() -> Node:
    return Node(core="xray")


async def test_fresh_apply_runs_xray_for_every_user(make, web, tmp_path):
    node = xray_node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")  # vless: vless-ws-tls
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    assert "xray" in component.capabilities
    await component.apply(node.part())

    assert component.pid is not None and component.starts == 1
    argv = process.cmdline(component.pid)
    assert argv == [xray_binary(), "run", "-config", str(component.config_path)]
    record = json.loads((tmp_path / "v2ray" / "process.json").read_bytes())
    assert (record["core"], record["binary"]) == ("xray", xray_binary())
    assert json.loads(component.config_path.read_bytes())["vpnfleet"] == {"core": "xray"}
    for email, user_uuid in node.users.items():
        assert await works("vmess", vm, user_uuid, web.url(100_000)), f"{email} over VMess"
        assert await works("vless", vl, user_uuid, web.url(100_000)), f"{email} over VLESS ws+tls"
    assert running_users(tmp_path) == node.users
    assert os.getsid(component.pid) == component.pid != os.getsid(0)


async def test_users_change_on_xray_without_a_restart(make, web, target):
    reality = Reality(target)
    node = xray_node()
    vm = node.inbound("vm", "vmess")
    vr = node.inbound("vr", "vless", profile="vless-reality-vision", **reality.settings)
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    pid, url = component.pid, web.url(100_000)

    # Hot add: the REALITY user is added with the Vision flow (without it, a Vision client is refused).
    node.users["carol"] = new_uuid()
    await component.apply(node.part())
    assert await works("vless", vr, node.users["carol"], url, transport=reality.client)
    assert await works("vmess", vm, node.users["carol"], url)
    assert (component.pid, component.starts) == (pid, 1)

    bob = node.users.pop("bob")
    await component.apply(node.part())
    assert await refused("vless", vr, bob, url, transport=reality.client) and await refused("vmess", vm, bob, url)
    assert await works("vless", vr, node.users["alice"], url, transport=reality.client)

    old = node.users["alice"]
    node.users["alice"] = new_uuid()  # rotate
    await component.apply(node.part())
    assert await refused("vless", vr, old, url, transport=reality.client)
    assert await works("vless", vr, node.users["alice"], url, transport=reality.client)
    assert (component.pid, component.starts) == (pid, 1)


async def test_usage_on_xray_is_counted_per_user_exactly_once(make, web, target):
    reality = Reality(target)
    node = xray_node()
    vm = node.inbound("vm", "vmess")
    vr = node.inbound("vr", "vless", profile="vless-reality-vision", **reality.settings)
    vl = node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid(), "carol": new_uuid(), "dave": new_uuid()}
    component = make()
    await component.apply(node.part())

    assert await works("vmess", vm, node.users["alice"], web.url(MB))
    assert await works("vless", vr, node.users["bob"], web.url(2 * MB), transport=reality.client)
    assert await works("vless", vl, node.users["carol"], web.url(MB))
    taken = {e.email: e for e in await component.take_traffic(1)}
    assert set(taken) == {"alice", "bob", "carol"}  # dave moved nothing
    for email, size in (("alice", MB), ("bob", 2 * MB), ("carol", MB)):
        assert size <= taken[email].downlink_bytes < size + HEADER_SLACK, email
        assert 0 < taken[email].uplink_bytes < HEADER_SLACK, email
    component.spooled(1)
    assert await component.take_traffic(2) == []


async def test_drift_on_xray_is_repaired(make, web, events):
    node = xray_node()
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    url = web.url(100_000)
    assert await component.reconcile() == 0

    intruder = new_uuid()
    async with V2RayApi(component.api_port, core=XRAY) as api:  # behind the driver's back
        assert await api.remove_user("vm", "alice")
        assert await api.add_user("vl", "vless", "mallory", intruder)
    assert await refused("vmess", vm, node.users["alice"], url)
    assert await works("vless", vl, intruder, url)

    assert await component.reconcile() == 2
    assert await works("vmess", vm, node.users["alice"], url)
    assert await refused("vless", vl, intruder, url)
    assert component.starts == 1
    assert not any(intruder in m or node.users["alice"] in m for _l, _s, m in events)


async def test_xray_api_answers_map_to_idempotent_results(make):
    node = xray_node()
    node.inbound("vm", "vmess")
    node.inbound("vl", "vless")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    async with V2RayApi(component.api_port, core=XRAY) as api:
        assert await api.add_user("vm", "vmess", "alice", new_uuid()) is False
        assert await api.add_user("vl", "vless", "ALICE", new_uuid()) is False  # emails ignore case here too
        assert await api.remove_user("vl", "nobody") is False
        with pytest.raises(ApiError, match="not found"):
            await api.remove_user("no-such-inbound", "alice")
    async with V2RayApi(component.api_port) as api:  # V2Ray's names
        # Xray also serves its API under V2Ray's service names (for old tools), but it decodes only its own
        # type names: a user added with V2Ray's would not be added. Hence the Core's names, not a guess.
        assert await api.alive()
        with pytest.raises(ApiError, match="unknown operation"):
            await api.add_user("vm", "vmess", "bob", new_uuid())


async def test_a_new_agent_process_adopts_the_running_xray(make, web, events, caplog):
    caplog.set_level(logging.INFO, logger=driver.__name__)  # the driver's events follow its log level
    node = xray_node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    first = make()
    await first.apply(node.part())
    pid = first.pid
    await first.close()

    second = make()
    await second.apply(node.part())
    assert second.pid == pid and second.starts == 0
    assert any("adopted the running Xray" in message for _l, _s, message in events)
    node.users["bob"] = new_uuid()
    await second.apply(node.part())
    assert second.pid == pid and await works("vmess", vm, node.users["bob"], web.url(100_000))
    await second.close()

    # A record naming another binary than the one running is not ours to adopt: that process is stopped (it
    # runs our config file) and a fresh Xray started.
    record_file = second.config_path.parent / "process.json"
    record = json.loads(record_file.read_bytes())
    assert record["binary"] == xray_binary() and record["core"] == "xray"
    record_file.write_text(json.dumps({**record, "binary": "/opt/other/xray"}))
    third = make()
    await third.apply(node.part())
    assert third.starts == 1 and third.pid != pid and process.start_ticks(pid) is None
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))

    # The Xray dies: the supervisor starts the last good config on Xray again.
    pid = third.pid
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: third.pid not in (None, pid), 15, "the supervisor to restart Xray")
    # setpriv execs Xray a moment after the fork: under load its command line can still be setpriv's
    await wait_until(lambda: process.cmdline(third.pid)[:2] == [xray_binary(), "run"], 10, "Xray to exec")
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))


async def test_xray_access_log_lines_are_masked(make, web, events, caplog):
    caplog.set_level(logging.DEBUG, logger=driver.__name__)
    node = xray_node()
    vm = node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    node.log_level = "info"
    component = make()
    part = node.part()
    part.access_log = True
    await component.apply(part)
    assert await works("vmess", vm, node.users["alice"], web.url(1000))

    def access_line() -> str | None:
        return next((m for _level, source, m in events if source == "v2ray" and " accepted " in m
                     and "email: alice" in m), None)

    line = await wait_until(access_line, 5, "the access log line of alice's download")
    assert line.startswith("from ") and "127.0.0.1:" not in line.split(" accepted ")[0]
    assert "203.0.113.10:8080" in line
    assert any("Xray" in m and "started" in m for _level, _s, m in events)


# -- switching cores ---------------------------------------------------------------------------------------


@pytest.mark.skipif(v2ray_binary() is None, reason="needs the v2ray binary too")
async def test_switching_cores_is_one_restart_and_keeps_users_and_bytes(make, web, tmp_path):
    node = Node(core="v2ray")
    vm, vl = node.inbound("vm", "vmess"), node.inbound("vl", "vless")
    node.users = {"alice": new_uuid(), "bob": new_uuid()}
    component = make()
    await component.apply(node.part())
    v2ray_pid, api_port = component.pid, component.api_port
    assert process.cmdline(v2ray_pid)[0] == component.binaries["v2ray"]
    assert await live.works("vmess", vm, node.users["alice"], web.url(MB))  # counted by V2Ray

    node.core = "xray"
    await component.apply(node.part())
    assert component.starts == 2 and component.pid != v2ray_pid and process.start_ticks(v2ray_pid) is None
    assert process.cmdline(component.pid)[:2] == [xray_binary(), "run"] and component.api_port == api_port
    for user_uuid in node.users.values():
        assert await works("vmess", vm, user_uuid, web.url(100_000))
        assert await works("vless", vl, user_uuid, web.url(100_000))
    # V2Ray's counters were read (with V2Ray's service names) before it stopped: alice's megabyte is kept.
    taken = {e.email: e for e in await component.take_traffic(1)}
    assert MB <= taken["alice"].downlink_bytes < MB + 2 * 100_000 + 2 * HEADER_SLACK
    component.spooled(1)
    assert json.loads((tmp_path / "v2ray" / "last_good.json").read_bytes())["vpnfleet"] == {"core": "xray"}

    # A user change on Xray: hot, through Xray's API.
    node.users["carol"] = new_uuid()
    await component.apply(node.part())
    assert component.starts == 2 and await works("vless", vl, node.users["carol"], web.url(100_000))

    # And back: one more restart, into V2Ray, with carol.
    node.core = ""
    await component.apply(node.part())
    assert component.starts == 3 and process.cmdline(component.pid)[0] == component.binaries["v2ray"]
    assert await live.works("vless", vl, node.users["carol"], web.url(100_000))
    assert "vpnfleet" not in json.loads(component.config_path.read_bytes())


@pytest.mark.skipif(v2ray_binary() is None, reason="needs the v2ray binary too")
async def test_a_switch_that_fails_leaves_or_restores_the_last_good_core(make, web, tmp_path, target):
    reality = Reality(target)
    node = xray_node()
    vm = node.inbound("vm", "vmess")
    node.inbound("vr", "vless", profile="vless-reality-vision", **reality.settings)
    node.users = {"alice": new_uuid()}
    component = make(start_timeout=10)
    await component.apply(node.part())
    xray_pid = component.pid

    # V2Ray cannot serve REALITY: refused before anything is touched (a rejected config, not retried).
    node.core = "v2ray"
    with pytest.raises(ValueError, match="needs the Xray core"):
        component.validate(node.part())
    with pytest.raises(ValueError, match="needs the Xray core"):
        await component.apply(node.part())
    assert (component.pid, component.starts) == (xray_pid, 1)

    # A switch to V2Ray whose new inbound's port is taken: `-test` passes, the start does not; Xray (the last
    # good core) runs again with the last good config, and the users of the revision were applied to it.
    vr = node.port("vr")
    del node.inbounds["vr"]
    node.users["bob"] = new_uuid()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        node.inbound("vl", "vless", squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use.*users were applied"):
            await component.apply(node.part())
    assert component.starts == 3  # the failed V2Ray, then Xray again
    assert process.cmdline(component.pid)[:2] == [xray_binary(), "run"]
    config = json.loads(component.config_path.read_bytes())
    assert config["vpnfleet"] == {"core": "xray"} and config["inbounds"][2]["streamSettings"]["security"] == "reality"
    assert set(running_users(tmp_path)) == {"alice", "bob"}
    assert await works("vmess", vm, node.users["bob"], web.url(100_000))
    assert await works("vless", vr, node.users["bob"], web.url(100_000), transport=reality.client)


async def test_apply_none_stops_xray(make, tmp_path):
    node = xray_node()
    node.inbound("vm", "vmess")
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    pid = component.pid
    await component.apply(None)
    assert component.pid is None and process.start_ticks(pid) is None
    assert not (tmp_path / "v2ray" / "config.json").exists()
