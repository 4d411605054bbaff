"""Seed 000's local relay, wired into a running controller: the file follows the running nodes.

The file logic itself (backups, validation, what is kept) is tested in tests/unit/test_local_relay.py.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess, wait_for
from tests.v2ray_lab import fetch, free_port, wait_port

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("v2ray") is None, reason="needs the v2ray binary (Debian package v2ray)")]

OPERATOR_CONFIG = {
    "log": {"loglevel": "warning"},
    "inbounds": [{"tag": "socks-in", "listen": "127.0.0.1", "port": 1, "protocol": "socks",
                  "settings": {"udp": False}}],
    "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}}],
    "routing": {"rules": []},
}


@pytest.fixture()
def relay(tmp_path: Path) -> Iterator[tuple[ControllerProcess, Path, Path]]:
    config = tmp_path / "relay" / "config.json"
    config.parent.mkdir()
    operator = json.loads(json.dumps(OPERATOR_CONFIG))
    operator["inbounds"][0]["port"] = free_port()
    config.write_text(json.dumps(operator, indent=2))
    marker = tmp_path / "reloads"
    script = tmp_path / "reload.sh"
    script.write_text(f"#!/bin/sh\necho reload >> {marker}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    ctl = ControllerProcess(tmp_path / "data", env={"VPNFLEET_V2RAY_ENABLED": "1",
                                                    "VPNFLEET_V2RAY_LOCAL_CONFIG_PATH": str(config),
                                                    "VPNFLEET_V2RAY_RELOAD_COMMAND": str(script),
                                                    # the proof below that traffic crossed the node
                                                    "VPNFLEET_V2RAY_ACCESS_LOG": "1"})
    try:
        yield ctl.start(), config, marker
    finally:
        ctl.cleanup()


def _managed(config: Path) -> list[dict]:
    return [o for o in json.loads(config.read_text())["outbounds"] if o["tag"].startswith("vpnfleet-node-")]


def test_relay_follows_running_nodes(relay: tuple[ControllerProcess, Path, Path], internet) -> None:
    ctl, config, marker = relay
    node = ctl.wait_running(ctl.create_node(name="relay-a")["id"])
    wait_for(lambda: len(_managed(config)) == 1, 20, message="outbound for the running node")
    out = _managed(config)[0]
    assert out["tag"] == f"vpnfleet-node-{node['id']}" and out["protocol"] == "vmess"
    vnext = out["settings"]["vnext"][0]
    vmess_port = next(i["port"] for i in ctl.node(node["id"])["v2ray_inbounds"] if i["protocol"] == "vmess")
    assert vnext["address"] == "127.0.0.1" and vnext["port"] == vmess_port
    data = json.loads(config.read_text())
    assert data["outbounds"][0]["tag"] == "direct"  # the operator's parts are kept
    assert [b["tag"] for b in data["routing"]["balancers"]] == ["vpnfleet"]
    assert marker.read_text().count("reload") >= 1
    assert list(config.parent.glob("config.json.bak-*")), "a backup before the change"

    # the relay's own user is on the node, so its outbound can connect
    wait_for(lambda: ctl.node(node["id"])["agent"]["in_sync"], 20, message="node in sync")
    from protos import agent_pb2

    applied = agent_pb2.DesiredState.FromString(
        (ctl.data_dir / "local-nodes" / node["id"] / "state" / "applied_state.pb").read_bytes())
    relay_users = [u for u in applied.v2ray.users if u.email == "vpnfleet-relay"]
    assert len(relay_users) == 1 and relay_users[0].uuid == vnext["users"][0]["id"]

    # and it does relay: a V2Ray running the managed file carries traffic through the node
    socks_port = data["inbounds"][0]["port"]
    relay_v2ray = subprocess.Popen(["v2ray", "-config", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        wait_port(socks_port)
        # from the internet host: a tunnel through the node cannot reach loopback
        assert len(fetch(socks_port, internet.url(100_000), timeout=10)) == 100_000
        # through the node, not the operator's "direct": the node's V2Ray logged the relay's user
        wait_for(lambda: ctl.api.get(f"/api/v1/nodes/{node['id']}/logs",
                                     params={"search": "vpnfleet-relay"}).json()["lines"], 15,
                 message="the node's access log shows the relay's connection")
    finally:
        relay_v2ray.kill()
        relay_v2ray.wait(5)

    assert ctl.api.delete(f"/api/v1/nodes/{node['id']}").status_code == 202
    wait_for(lambda: _managed(config) == [], 30, message="deleted node leaves the relay")
    assert "balancers" not in json.loads(config.read_text()).get("routing", {}) or \
        json.loads(config.read_text())["routing"]["balancers"] == []
