"""LocalRelay against the real ``v2ray -test`` (Debian's v2ray 4.34)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from controller.local_relay import CATCH_ALL_RULE, LocalRelay, RelayError, RelayNode, plan

V2RAY = shutil.which("v2ray") or "/usr/bin/v2ray"
needs_v2ray = pytest.mark.skipif(
    not Path(V2RAY).exists(), reason="needs the v2ray binary for `v2ray -test` (Debian package v2ray)"
)

NODE_A = RelayNode("a1", "Tokyo", "203.0.113.10", 11994, "3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718")
NODE_B = RelayNode("b2", "Virginia", "2001:db8::7", 11994, "7d0e6c9b-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
OPERATOR_CONFIG = {
    "log": {"loglevel": "warning"},
    "inbounds": [{"tag": "socks-in", "listen": "127.0.0.1", "port": 10808, "protocol": "socks",
                  "settings": {"auth": "noauth", "udp": True}}],
    "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}},
                  {"tag": "blocked", "protocol": "blackhole", "settings": {}}],
    "routing": {"domainStrategy": "AsIs",
                "rules": [{"type": "field", "ip": ["10.0.0.0/8", "192.168.0.0/16"], "outboundTag": "direct"}]},
}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(OPERATOR_CONFIG, indent=4) + "\n")
    path.chmod(0o640)
    return path


def v2ray_accepts(path: Path) -> bool:
    return subprocess.run([V2RAY, "-test", "-config", str(path)], capture_output=True, timeout=30).returncode == 0


def others_in(directory: Path, config: Path) -> list[str]:
    """Files beside the config other than itself and its backups (i.e. leftovers)."""
    return sorted(p.name for p in directory.iterdir() if p != config and ".bak-" not in p.name)


def relay(path: Path, **kwargs: object) -> LocalRelay:
    return LocalRelay(path, v2ray_binary=V2RAY, **kwargs)  # type: ignore[arg-type]


@needs_v2ray
async def test_sync_adds_balanced_outbounds_and_keeps_the_operators_parts(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    r = relay(config_path)
    with caplog.at_level(logging.INFO, logger="controller.local_relay"):
        assert await r.sync([NODE_B, NODE_A]) is True
    config = json.loads(config_path.read_text())
    tags = [o["tag"] for o in config["outbounds"]]
    assert tags == ["direct", "blocked", "vpnfleet-node-a1", "vpnfleet-node-b2"]
    vnext = config["outbounds"][3]["settings"]["vnext"][0]
    assert vnext == {"address": "2001:db8::7", "port": 11994,
                     "users": [{"id": NODE_B.uuid, "alterId": 0, "security": "auto"}]}
    assert config["routing"]["balancers"] == [{"tag": "vpnfleet", "selector": ["vpnfleet-node-"]}]
    assert config["routing"]["rules"] == OPERATOR_CONFIG["routing"]["rules"] + [CATCH_ALL_RULE]  # type: ignore[index]
    for key in ("log", "inbounds"):
        assert config[key] == OPERATOR_CONFIG[key]
    assert config["routing"]["domainStrategy"] == "AsIs"
    assert v2ray_accepts(config_path)
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o640
    backups = r.backups()
    assert len(backups) == 1
    assert json.loads(backups[0].read_text()) == OPERATOR_CONFIG
    assert others_in(config_path.parent, config_path) == []
    assert "2 node(s) added, 0 removed" in caplog.text
    assert NODE_A.uuid not in caplog.text and NODE_B.uuid not in caplog.text


@needs_v2ray
async def test_same_nodes_again_change_nothing(config_path: Path) -> None:
    r = relay(config_path)
    assert await r.sync([NODE_A, NODE_B]) is True
    written = config_path.read_bytes()
    assert await r.sync([NODE_B, NODE_A]) is False
    assert config_path.read_bytes() == written
    assert len(r.backups()) == 1


@needs_v2ray
async def test_removed_node_leaves_and_zero_nodes_restore_a_valid_operator_config(config_path: Path) -> None:
    r = relay(config_path)
    await r.sync([NODE_A, NODE_B])
    assert await r.sync([NODE_A]) is True
    config = json.loads(config_path.read_text())
    assert [o["tag"] for o in config["outbounds"]] == ["direct", "blocked", "vpnfleet-node-a1"]
    assert v2ray_accepts(config_path)

    assert await r.sync([]) is True
    assert json.loads(config_path.read_text()) == OPERATOR_CONFIG
    assert v2ray_accepts(config_path)
    assert await r.sync([]) is False
    assert len(r.backups()) == 3


@needs_v2ray
async def test_an_operator_rule_for_the_balancer_is_respected(config_path: Path) -> None:
    own_rule = {"type": "field", "domain": ["geosite-free.example"], "balancerTag": "vpnfleet"}
    config = json.loads(config_path.read_text())
    config["routing"]["rules"].append(own_rule)
    config["routing"]["balancers"] = [{"tag": "vpnfleet", "selector": ["something-else"]}]
    config_path.write_text(json.dumps(config))
    r = relay(config_path)

    await r.sync([NODE_A])
    synced = json.loads(config_path.read_text())
    assert synced["routing"]["rules"] == config["routing"]["rules"], "no catch-all rule when one exists"
    assert synced["routing"]["balancers"] == [{"tag": "vpnfleet", "selector": ["vpnfleet-node-"]}]

    await r.sync([])
    emptied = json.loads(config_path.read_text())
    assert own_rule in emptied["routing"]["rules"]
    assert emptied["routing"]["balancers"] == [{"tag": "vpnfleet", "selector": ["vpnfleet-node-"]}]
    assert "vpnfleet-node-a1" not in config_path.read_text()
    assert v2ray_accepts(config_path), "a rule naming a missing balancer would be refused"


@needs_v2ray
async def test_a_config_without_routing_gets_one_and_loses_it_again(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    bare = {"inbounds": OPERATOR_CONFIG["inbounds"], "outbounds": [{"tag": "direct", "protocol": "freedom"}]}
    path.write_text(json.dumps(bare))
    r = relay(path)
    await r.sync([NODE_A])
    assert json.loads(path.read_text())["routing"]["rules"] == [CATCH_ALL_RULE]
    await r.sync([])
    assert json.loads(path.read_text()) == bare


@needs_v2ray
async def test_a_config_v2ray_rejects_is_never_written(config_path: Path) -> None:
    before = config_path.read_bytes()
    bad = RelayNode("bad", "Broken", "198.51.100.1", 11994, "not-a-uuid-1234")
    with pytest.raises(RelayError) as caught:
        await relay(config_path).sync([NODE_A, bad])
    message = str(caught.value)
    assert "V2Ray rejected" in message and "invalid UUID" in message
    assert "not-a-uuid-1234" not in message and "<redacted>" in message
    assert config_path.read_bytes() == before
    assert others_in(config_path.parent, config_path) == []
    assert not list(config_path.parent.glob("*.bak-*"))


@needs_v2ray
async def test_reload_command_runs_once_per_change(config_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "reloads.log"
    script = tmp_path / "reload.py"
    script.write_text(f"import sys\nopen({str(marker)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    r = relay(config_path, reload_command=f"{sys.executable} {script} restart 'v2ray service'")
    await r.sync([NODE_A])
    await r.sync([NODE_A])
    await r.sync([NODE_A, NODE_B])
    assert marker.read_text().splitlines() == ["restart v2ray service"] * 2


@needs_v2ray
async def test_a_failing_reload_is_reported_after_the_file_was_written(config_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('v2ray.service: unit not found')\nsys.exit(5)\n")
    r = relay(config_path, reload_command=f"{sys.executable} {script}")
    with pytest.raises(RelayError, match=r"written but the reload command failed \(exit 5\)") as caught:
        await r.sync([NODE_A])
    assert "unit not found" in str(caught.value)
    assert "vpnfleet-node-a1" in config_path.read_text()

    missing = relay(config_path, reload_command="/nonexistent/reload-v2ray")
    with pytest.raises(RelayError, match="written but the reload command failed"):
        await missing.sync([NODE_B])
    assert "vpnfleet-node-b2" in config_path.read_text()


@needs_v2ray
async def test_a_failed_reload_is_retried_by_the_next_sync(config_path: Path, tmp_path: Path) -> None:
    broken, marker = tmp_path / "broken", tmp_path / "reloaded"
    script = tmp_path / "reload.py"
    script.write_text(f"import pathlib, sys\nif pathlib.Path({str(broken)!r}).exists(): sys.exit(1)\n"
                      f"pathlib.Path({str(marker)!r}).touch()\n")
    r = relay(config_path, reload_command=f"{sys.executable} {script}")
    broken.touch()
    with pytest.raises(RelayError, match="reload command failed"):
        await r.sync([NODE_A])
    with pytest.raises(RelayError, match="reload command failed"):
        await r.sync([NODE_A])
    broken.unlink()
    assert await r.sync([NODE_A]) is True, "the file is unchanged, but V2Ray still runs the old config"
    assert marker.exists()
    marker.unlink()
    assert await r.sync([NODE_A]) is False
    assert not marker.exists()
    assert len(r.backups()) == 1


@needs_v2ray
async def test_a_reload_that_leaves_a_daemon_behind_does_not_hang(config_path: Path) -> None:
    r = relay(config_path, reload_command="sh -c 'sleep 5 & echo started'", test_timeout=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await r.sync([NODE_A]) is True
    assert loop.time() - started < 2


@needs_v2ray
async def test_concurrent_syncs_are_serialized(config_path: Path) -> None:
    r = relay(config_path)
    results = await asyncio.gather(*(r.sync([NODE_A, NODE_B]) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert len(r.backups()) == 1


@needs_v2ray
async def test_backups_are_pruned_to_the_newest(config_path: Path) -> None:
    r = relay(config_path, backups_kept=2)
    unrelated = config_path.parent / "config.json.bak-mine"
    unrelated.write_text("keep me")
    contents = []
    for nodes in ([NODE_A], [NODE_A, NODE_B], [NODE_B], []):
        contents.append(config_path.read_bytes())
        assert await r.sync(nodes) is True
    backups = r.backups()
    assert len(backups) == 2
    assert [b.read_bytes() for b in backups] == contents[-2:]
    assert unrelated.read_text() == "keep me"


@pytest.mark.parametrize("content", ["{ not json", "// a comment\n{}", "[1, 2]", ""])
async def test_an_unparsable_config_is_left_untouched(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(RelayError, match="left untouched"):
        await relay(path).sync([NODE_A])
    assert path.read_text() == content
    assert others_in(tmp_path, path) == []


async def test_a_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RelayError, match="does not exist"):
        await relay(tmp_path / "nope.json").sync([NODE_A])
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_v2ray_binary_is_an_error(config_path: Path) -> None:
    before = config_path.read_bytes()
    r = LocalRelay(config_path, v2ray_binary="/nonexistent/v2ray")
    with pytest.raises(RelayError, match="cannot run"):
        await r.sync([NODE_A])
    assert config_path.read_bytes() == before
    assert others_in(config_path.parent, config_path) == []


async def test_a_slow_test_times_out(config_path: Path, tmp_path: Path) -> None:
    slow = tmp_path / "slow-v2ray"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    before = config_path.read_bytes()
    with pytest.raises(RelayError, match="longer than 0.5s"):
        await LocalRelay(config_path, v2ray_binary=str(slow), test_timeout=0.5).sync([NODE_A])
    assert config_path.read_bytes() == before
    assert others_in(tmp_path, config_path) == ["slow-v2ray"]


def test_plan_refuses_what_it_cannot_merge_safely() -> None:
    with pytest.raises(RelayError, match="legacy"):
        plan({"outbound": {"protocol": "freedom"}}, [NODE_A])
    with pytest.raises(RelayError, match="outbounds must be a JSON array"):
        plan({"outbounds": {}}, [NODE_A])
    with pytest.raises(RelayError, match="routing must be a JSON object"):
        plan({"routing": []}, [NODE_A])
    with pytest.raises(RelayError, match="unique"):
        plan({}, [NODE_A, NODE_A])


@pytest.mark.parametrize("config", [{}, {"routing": {}}, {"outbounds": [], "routing": {"balancers": []}},
                                    {"routing": {"rules": [], "balancers": []}}])
def test_plan_without_nodes_leaves_a_config_without_vpnfleet_parts_alone(config: dict[str, object]) -> None:
    assert plan(config, []) == config


def test_plan_keeps_the_balancer_where_the_operator_put_it() -> None:
    config = {"routing": {"balancers": [{"tag": "vpnfleet", "selector": ["x"], "strategy": {"type": "random"}},
                                        {"tag": "theirs", "selector": ["y"]}]}}
    result = plan(config, [NODE_A])
    assert result["routing"]["balancers"] == [
        {"tag": "vpnfleet", "selector": ["vpnfleet-node-"], "strategy": {"type": "random"}},
        {"tag": "theirs", "selector": ["y"]},
    ]
    assert config["routing"]["balancers"][0]["selector"] == ["x"], "the input is not modified"


def test_node_validation() -> None:
    with pytest.raises(ValueError, match="node_id"):
        RelayNode("", "n", "h", 1, NODE_A.uuid)
    with pytest.raises(ValueError, match="port"):
        RelayNode("x", "n", "h", 0, NODE_A.uuid)
    with pytest.raises(ValueError, match="backups_kept"):
        LocalRelay(Path("x"), backups_kept=0)
