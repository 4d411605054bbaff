"""The ``vpnfleet`` CLI against a real controller process, with real local agents enrolled over mTLS.

The controller starts once for the module on free loopback ports; nodes use the ``local`` provider, so each
node is a real ``vpnfleet-agent`` process. Teardown stops the controller and every agent it started (agents
run in their own session, so they outlive the controller unless killed through their pid files).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from controller.cli import ApiError, main, match_nodes, resolve_node
from tests.controller_process import ControllerProcess, free_port, wait_for

BIN = Path(sys.executable).parent
NODE_TIMEOUT = "60"


def command(script: str, module: str) -> list[str]:
    """The installed console script, or the module when the scripts are not beside this interpreter."""
    path = BIN / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


@dataclass
class Controller:
    """What the CLI tests need of the controller process: where it is and how to poke it directly."""

    process: ControllerProcess

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    @property
    def http_port(self) -> int:
        return self.process.http_port

    @property
    def key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    @property
    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPNFLEET_")}
        return {**env, "VPNFLEET_URL": self.url, "VPNFLEET_DATA_DIR": str(self.data_dir)}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Direct API calls, for what the test needs to provoke (not what it checks)."""
        r = self.process.api.request(method, path, timeout=10, **kwargs)
        r.raise_for_status()
        return r


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    # diagnostics.allow_private_targets: `nodes tcping` targets the controller's own loopback port
    ctl = ControllerProcess(tmp_path_factory.mktemp("ctl") / "data",
                            env={"VPNFLEET_DIAGNOSTICS_ALLOW_PRIVATE_TARGETS": "1"})
    try:
        yield Controller(ctl.start())
    finally:
        ctl.cleanup()


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(controller: Controller, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run the CLI in-process, configured like an operator on the controller's machine (key from the file)."""
    monkeypatch.setenv("VPNFLEET_URL", controller.url)
    monkeypatch.setenv("VPNFLEET_DATA_DIR", str(controller.data_dir))
    monkeypatch.delenv("VPNFLEET_API_KEY", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert controller.key not in out + err, "the CLI printed the API key"
        return code, out, err

    return run


@pytest.fixture(scope="module")
def node(controller: Controller) -> dict[str, Any]:
    """One running node for the read-only tests, created through the CLI as a separate process."""
    r = subprocess.run(command("vpnfleet", "controller.cli") + ["nodes", "create", "--region", "local", "--name",
                       "cli-test", "--wait", "--timeout", NODE_TIMEOUT, "--json"],
                       env=controller.cli_env, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["status"] == "running" and created["name"] == "cli-test"
    assert "running" in r.stderr  # progress goes to stderr when stdout carries JSON

    # "running" is the agent connected; its first applied report (the components `nodes show` lists) may
    # come a moment later
    def in_sync() -> bool:
        shown = subprocess.run(command("vpnfleet", "controller.cli") + ["nodes", "show", created["id"], "--json"],
                               env=controller.cli_env, capture_output=True, text=True, timeout=30)
        return shown.returncode == 0 and json.loads(shown.stdout)["agent"]["in_sync"]

    wait_for(in_sync, 30, interval=0.5, message="the node's first applied report")
    return created


class LineReader:
    """Reads a subprocess's stdout lines on a thread, so the test can wait for them with a bound."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 15.0) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError(f"no line with {text!r} within {timeout}s; saw {seen}")


def follow_process(controller: Controller, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(command("vpnfleet", "controller.cli") + list(argv), env=controller.cli_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C: the follower must exit 0 without a traceback."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(10)
    finally:
        stop_process(proc, signal.SIGKILL, 5)
    return code, proc.stderr.read()


# -- commands that need no node ---------------------------------------------------------------------------

def test_regions_and_version(cli: Run) -> None:
    code, out, _ = cli("regions")
    assert code == 0 and "local" in out and "REGION" in out
    code, out, _ = cli("--json", "regions")
    assert code == 0 and {"region": "local", "name": "Local", "provider": "local"} in json.loads(out)
    code, out, _ = cli("version")
    assert code == 0 and "controller 0.1.0" in out


# -- a node's life --------------------------------------------------------------------------------------------

def test_create_stop_start_rm_with_wait(cli: Run, controller: Controller) -> None:
    code, out, err = cli("nodes", "create", "--region", "local", "--wait", "--timeout", NODE_TIMEOUT)
    assert code == 0, err
    assert "created in region local: pending" in out and "  running" in out  # progress as it happened
    node_id = next(line.split()[1] for line in out.splitlines() if line.startswith("ID"))
    assert "Connectivity" in out and "online" in out

    code, out, err = cli("nodes", "stop", node_id[:13], "--wait", "--timeout", NODE_TIMEOUT)
    assert code == 0 and "  stopped" in out, err
    code, out, err = cli("nodes", "start", node_id, "--wait", "--timeout", NODE_TIMEOUT)
    assert code == 0 and "  running" in out, err

    code, out, err = cli("nodes", "rm", node_id[:8], "--wait", "--timeout", NODE_TIMEOUT)
    assert code == 0 and "deleting" in out and "  deleted" in out, err
    assert not (controller.data_dir / "local-nodes" / node_id).exists()  # the agent is gone with its machine
    code, out, _ = cli("nodes", "ls", "--json")
    assert node_id not in {n["id"] for n in json.loads(out)["items"]}
    code, out, _ = cli("nodes", "ls", "--all", "--json")
    assert {n["id"]: n["status"] for n in json.loads(out)["items"]}[node_id] == "deleted"


def test_ls_filters(cli: Run, node: dict[str, Any]) -> None:
    code, out, _ = cli("nodes", "ls")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "REGION", "STATUS", "AGENT", "IP", "REV", "CREATED"]
    row = next(r.split() for r in rows if node["id"] in r)
    assert row[:6] == [node["id"], "cli-test", "local", "running", "online", "127.0.0.1"]
    assert re.fullmatch(r"\d+/\d+", row[6])  # applied/desired revision

    def ids(*args: str) -> set[str]:
        code, out, err = cli("nodes", "ls", "--json", *args)
        assert code == 0, err
        return {n["id"] for n in json.loads(out)["items"]}

    assert node["id"] in ids("--search", "cli-te", "--region", "local", "--status", "running", "--online")
    assert node["id"] not in ids("--offline")
    assert node["id"] not in ids("--status", "stopped")
    assert node["id"] not in ids("--region", "nowhere")
    total = json.loads(cli("nodes", "ls", "--all", "--json")[1])["total"]
    code, out, _ = cli("nodes", "ls", "--all", "--size", "1")
    footer = re.fullmatch(rf"1 of {total} nodes \(page 1 of {total}\)", out.splitlines()[-1])
    assert code == 0 and (footer is not None) == (total > 1)  # the footer says when a page is not everything


def test_show_by_prefix_and_by_name(cli: Run, node: dict[str, Any]) -> None:
    for ref in (node["id"][:8], "cli-test", node["id"]):
        code, out, err = cli("nodes", "show", ref)
        assert code == 0, err
        assert node["id"] in out and "running" in out and "Capabilities" in out
        assert "COMPONENT" in out and "agent" in out and "ok" in out
    code, out, _ = cli("nodes", "show", node["id"][:6], "--json")
    assert json.loads(out)["agent"]["enrolled"] is True


def test_logs(cli: Run, node: dict[str, Any]) -> None:
    code, out, err = cli("logs", node["id"][:8])
    assert code == 0, err
    assert "applied desired state revision" in out and " INFO " in out and " agent " in out
    code, out, _ = cli("logs", node["id"], "-n", "1", "--json")
    assert len(json.loads(out)["lines"]) == 1
    code, out, _ = cli("logs", node["id"], "--level", "error", "--search", "applied", "--since", "1h")
    assert code == 0 and out == ""


def test_logs_follow_until_ctrl_c(controller: Controller, node: dict[str, Any]) -> None:
    proc = follow_process(controller, "logs", node["id"][:8], "-f", "-n", "2")
    try:
        reader = LineReader(proc)
        assert len(reader.wait_for("INFO")) >= 1  # recent lines first
        # a change of the node's agent settings makes the agent apply (and log) a new revision, live
        revision = controller.api("PATCH", f"/api/v1/nodes/{node['id']}",
                                  json={"agent_settings": {"metrics_interval_seconds": 5}}).json()
        reader.wait_for(f"applied desired state revision {revision['agent']['desired_revision']}")
    finally:
        code, err = interrupt(proc)
    assert code == 0 and "Traceback" not in err


def test_events_follow(controller: Controller, node: dict[str, Any]) -> None:
    proc = follow_process(controller, "events")
    try:
        reader = LineReader(proc)
        reader.wait_for(" initial ")
        controller.api("PATCH", f"/api/v1/nodes/{node['id']}", json={"name": "cli-test-renamed"})
        line = reader.wait_for("cli-test-renamed")[-1]
        assert " update " in line and node["id"] in line and "running" in line
    finally:
        controller.api("PATCH", f"/api/v1/nodes/{node['id']}", json={"name": "cli-test"})
        code, err = interrupt(proc)
    assert code == 0 and "Traceback" not in err


def test_tcping_info_metrics(cli: Run, controller: Controller, node: dict[str, Any]) -> None:
    code, out, err = cli("nodes", "tcping", "cli-test", f"127.0.0.1:{controller.http_port}")
    assert code == 0 and "connected from node" in out, err
    code, out, _ = cli("nodes", "tcping", "cli-test", f"127.0.0.1:{free_port()}", "--json")
    assert code == 1 and json.loads(out)["connected"] is False  # exit 1 like ping, when nothing answers
    code, out, err = cli("nodes", "info", node["id"][:8])
    assert code == 0 and "linux" in out and "Hostname" in out, err
    code, out, err = cli("nodes", "metrics", node["id"][:8], "--json")
    assert code == 0 and json.loads(out)["node_id"] == node["id"], err
    code, out, _ = cli("nodes", "metrics", node["id"][:8])
    assert code == 0 and ("CPU" in out or "no metrics yet" in out)


def test_operations_log(cli: Run, node: dict[str, Any]) -> None:
    code, out, err = cli("ops", "--target", node["id"], "-n", "50")
    assert code == 0 and "POST /api/v1/nodes" in out and "admin" in out, err


# -- errors -------------------------------------------------------------------------------------------------

def test_unknown_node(cli: Run) -> None:
    code, out, err = cli("nodes", "show", "00000000-0000-4000-8000-000000000000")
    assert code == 1 and out == ""
    assert err.startswith("error: node 00000000-0000-4000-8000-000000000000 not found "
                          "(RESOURCE_NOT_FOUND, request req_")
    code, _, err = cli("logs", "zzz-no-such-node")
    assert code == 1 and "no node matches 'zzz-no-such-node'" in err


def test_validation_error(cli: Run) -> None:
    code, _, err = cli("nodes", "create", "--region", "mars")
    assert code == 1 and "unknown region 'mars'" in err and "VALIDATION_ERROR" in err


def test_bad_key(cli: Run) -> None:
    code, out, err = cli("--api-key", "vpf_not-the-key", "regions")
    assert code == 1 and "invalid API key (INVALID_CREDENTIALS, request req_" in err
    assert "vpf_not-the-key" not in out + err


def test_missing_key(cli: Run, controller: Controller, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPNFLEET_DATA_DIR", str(tmp_path))
    # the data dir moved away, so name the controller's CA explicitly
    monkeypatch.setenv("VPNFLEET_CA_CERT", str(controller.data_dir / "pki" / "ca.crt"))
    code, _, err = cli("nodes", "ls")
    assert code == 1 and "VPNFLEET_API_KEY" in err and str(tmp_path / "admin.key") in err
    monkeypatch.setenv("VPNFLEET_API_KEY", "vpf_from-env")  # the environment wins over the file
    code, _, err = cli("nodes", "ls")
    assert code == 1 and "invalid API key" in err


def test_controller_unreachable(cli: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = cli("--url", url, "nodes", "ls")
    assert code == 1 and err.strip() == f"error: cannot reach the controller at {url}"
    # a follower does not retry when the very first connection fails
    code, _, err = cli("logs", "00000000-0000-4000-8000-000000000000", "-f", "--url", url)
    assert code == 1 and "cannot reach" in err


# -- node references (no server) ----------------------------------------------------------------------------

class FakeApi:
    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        assert (method, path) == ("GET", "/api/v1/nodes")
        items = [n for n in self.nodes if params["search"] in n["id"] or params["search"] in n["name"]]
        return {"items": items, "total": len(items), "page": 1, "size": 500, "pages": 1}


A = {"id": "abcd1234-0000-4000-8000-000000000001", "name": "edge"}
B = {"id": "abcd9999-0000-4000-8000-000000000002", "name": "abcd1234"}


def test_node_references() -> None:
    api = FakeApi([A, B])
    assert resolve_node(api, A["id"].upper()) == A["id"]  # a full uuid is used as is
    assert resolve_node(api, "abcd9") == B["id"]
    assert resolve_node(api, "edge") == A["id"]
    assert resolve_node(api, "abcd1234") == B["id"]  # an exact name beats an id prefix
    with pytest.raises(ApiError, match="'abcd' is ambiguous: it matches 2 nodes: abcd1234-"):
        resolve_node(api, "abcd")
    with pytest.raises(ApiError, match="no node matches 'ffff'"):
        resolve_node(api, "ffff")
    assert match_nodes("ABCD1", [A, B]) == [A]


# -- clients (V2Ray subscribers) ------------------------------------------------------------------------------

def test_clients_lifecycle(cli: Run) -> None:
    code, out, err = cli("clients", "create", "cli-alice", "--days", "30", "--limit-gb", "5")
    assert code == 0 and "cli-alice" in out and "active" in out and "/sub/" in out, err
    code, out, _ = cli("clients", "ls", "--search", "cli-alice")
    assert code == 0 and "cli-alice" in out and "5.0 GiB" in out
    code, out, _ = cli("clients", "block", "cli-alice")
    assert code == 0 and "blocked" in out
    code, out, _ = cli("clients", "unblock", "cli-alice")
    assert code == 0 and "active" in out
    code, out, _ = cli("clients", "extend", "cli-alice", "5")
    assert code == 0
    code, before, _ = cli("clients", "config", "cli-alice")
    code, after, _ = cli("clients", "config", "cli-alice", "--rotate")
    assert code == 0 and "/sub/" in after and before.strip() != after.strip()
    code, out, _ = cli("clients", "usage", "cli-alice")
    assert code == 0 and "no usage" in out
    code, out, _ = cli("--json", "clients", "show", "cli-alice")
    assert code == 0 and json.loads(out)["username"] == "cli-alice"
    code, _, err = cli("clients", "create", "cli-alice", "--days", "1")
    assert code == 1 and "already exists" in err
    code, _, err = cli("clients", "rm", "cli-alice")
    assert code == 0
    code, _, err = cli("clients", "show", "cli-alice")
    assert code == 1 and "no client named 'cli-alice'" in err


# -- node-supplied text on the operator's terminal (no server) ------------------------------------------------

EVIL = "ok\x1b[2J\x1b[H\x1b]0;pwned\x07\x1bPq#0\x1b\\\x9b31m\x7f\x85\x00\x08\r\n\tdone"


class FakeNodeApi:
    """Answers what `logs NODE` and `nodes show NODE` ask, with text a hostile node chose."""

    node_id = "abcd1234-0000-4000-8000-000000000001"

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        if path.endswith("/logs"):
            return {"node_id": self.node_id, "dropped_by_agent": 0, "lines": [
                {"node_id": self.node_id, "time": "2026-01-01T00:00:00Z", "level": "warning\x1b[8m",
                 "source": "v2ray\x1b[1A", "message": EVIL}]}
        agent = {"connectivity": "online", "online": True, "last_seen_at": None, "enrolled": True,
                 "enrolled_at": None, "version": "1.0\x1b[5m", "hostname": EVIL, "capabilities": [EVIL],
                 "desired_revision": 2, "applied_revision": 1, "in_sync": False, "settings": {},
                 "telemetry_dropped": 0, "telemetry_rejected": 7,
                 "components": [{"name": "v2ray", "state": "failed", "error": EVIL, "config_hash": EVIL}]}
        return {"id": self.node_id, "name": EVIL, "region": "local", "region_name": "Local", "provider": "local",
                "instance_id": None, "public_ip": EVIL, "private_ip": None, "status": "error",
                "status_reason": EVIL, "status_changed_at": None, "created_at": None, "deleted_at": None,
                "agent": agent}


def test_terminal_controls_are_stripped_from_node_supplied_text() -> None:
    import argparse
    import io

    from rich.console import Console

    from controller.cli import Ctx, cmd_logs, cmd_nodes_show, event_line, terminal_safe

    assert terminal_safe(EVIL) == "ok31m\tdone"
    assert terminal_safe("x\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ é😀") == "xlink é😀"
    out, err = io.StringIO(), io.StringIO()
    # a real terminal's console (colours on), so the only escapes in the output are rich's own styles
    ctx = Ctx(api=FakeNodeApi(), out=Console(file=out, force_terminal=True, color_system="standard", width=400),
              err=Console(file=err, width=400), as_json=False)
    cmd_logs(ctx, argparse.Namespace(node=FakeNodeApi.node_id, level=None, search=None, since=None, limit=None,
                                     follow=False))
    cmd_nodes_show(ctx, argparse.Namespace(node=FakeNodeApi.node_id))
    ctx.out.print(event_line({"type": "update", "time": None, "node": FakeNodeApi().request("GET", "/node")}))
    printed = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # rich's colours (SGR) are all that may remain
    assert "\x1b" not in printed and "\x07" not in printed and "\x9b" not in printed and "\x7f" not in printed
    assert "ok31m" in printed and "Telemetry rejected" in printed
    assert not re.search(r"\x1b\[[0-9;]*[^0-9;m]", out.getvalue())  # no cursor movement, no screen clearing


def test_the_cli_speaks_https_and_trusts_only_the_given_ca(cli: Run, controller: Controller, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller serves https (its own CA): the CLI trusts $VPNFLEET_DATA_DIR/pki/ca.crt by default, or
    --ca-cert / $VPNFLEET_CA_CERT; a CA that did not sign the controller's certificate is refused, clearly."""
    assert controller.url.startswith("https://")
    code, out, err = cli("regions")
    assert code == 0, err
    other = tmp_path / "other-ca.crt"
    from controller.pki import CertificateAuthority
    other.write_bytes(CertificateAuthority(tmp_path / "other-pki").cert_pem)
    code, _, err = cli("--ca-cert", str(other), "regions")
    assert code == 1 and "certificate this CLI does not trust" in err and "--ca-cert" in err
    monkeypatch.setenv("VPNFLEET_CA_CERT", str(other))
    assert cli("regions")[0] == 1
    monkeypatch.setenv("VPNFLEET_CA_CERT", str(controller.data_dir / "pki" / "ca.crt"))
    assert cli("regions")[0] == 0
    code, _, err = cli("--url", f"http://127.0.0.1:{controller.http_port}", "regions")
    assert code == 1  # plain http to the https port gets nothing
