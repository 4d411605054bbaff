"""A real controller and real agent processes over gRPC/mTLS, with the local provider."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from httpx_sse import connect_sse

from tests.controller_process import ControllerProcess, wait_for


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return os.path.exists(f"/proc/{pid}/cmdline") and open(f"/proc/{pid}/cmdline", "rb").read() != b""


@pytest.fixture
def diagnostics_controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A controller with diagnostics.allow_private_targets on: the test tcpings its own loopback port."""
    ctl = ControllerProcess(tmp_path / "data", env={"VPNFLEET_DIAGNOSTICS_ALLOW_PRIVATE_TARGETS": "1"})
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()


def test_node_lifecycle_metrics_commands_and_delete(diagnostics_controller: ControllerProcess) -> None:
    controller = diagnostics_controller
    api = controller.api
    created = controller.create_node(name="edge-1")
    assert created["status"] == "pending" and created["name"] == "edge-1"
    node = controller.wait_running(created["id"])
    assert node["agent"]["enrolled"] and node["agent"]["version"]
    assert node["instance_id"] == f"local-{node['id']}"
    assert {"tcping", "info"} <= set(node["agent"]["capabilities"])
    components = {c["name"]: c for c in node["agent"]["components"]}
    assert components["agent"]["state"] == "ok" and components["agent"]["error"] is None
    assert len(components["agent"]["config_hash"]) == 64
    assert components["wireguard"]["state"] == "absent"  # no WireGuard server on this node
    nid = node["id"]

    # the agent's private key never left the node directory, and it is private
    key_file = controller.data_dir / "local-nodes" / nid / "state" / "agent.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"

    # metrics arrive (1 s interval in tests) and land in the rollup history
    def has_metrics():
        m = api.get(f"/api/v1/nodes/{nid}/metrics").json()
        return m if m["current"] and m["history"] else None

    metrics = wait_for(has_metrics, 20, message="metrics")
    assert metrics["current"]["memory"]["total"] > 0 and metrics["current"]["disk"]["total"] > 0
    assert metrics["history"][0]["samples"] >= 1

    # tcping from the node: an open port and a closed one (NodePass's answer shape)
    r = api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": f"127.0.0.1:{controller.http_port}"})
    assert r.status_code == 200 and r.json()["connected"] is True and r.json()["error"] is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = api.get(f"/api/v1/nodes/{nid}/tcping", params={"target": f"127.0.0.1:{closed}"})
    body = r.json()
    assert r.status_code == 200 and body["connected"] is False and "refused" in body["error"]

    # info measured on the node
    info = api.get(f"/api/v1/nodes/{nid}/info").json()
    assert info["os"] == "linux" and info["mem_total"] > 0 and info["ver"] == node["agent"]["version"]
    assert info["tls"] == "1" and info["alias"] == "edge-1"

    # logs: the agent's own lines, filterable
    logs = api.get(f"/api/v1/nodes/{nid}/logs", params={"search": "enrolled"}).json()
    assert any("enrolled as node" in line["message"] for line in logs["lines"])
    assert all("enrolled" in line["message"].lower() for line in logs["lines"])

    # delete: machine (agent process) gone, node marked deleted, not listed any more
    pid = controller.agent_pid(nid)
    r = api.delete(f"/api/v1/nodes/{nid}")
    assert r.status_code == 202 and r.json()["status"] == "deleting"
    wait_for(lambda: controller.node(nid)["status"] == "deleted", 20, message="deleted")
    assert not _pid_alive(pid)
    assert nid not in [n["id"] for n in api.get("/api/v1/nodes").json()["items"]]
    assert api.delete(f"/api/v1/nodes/{nid}").status_code == 404


def test_desired_state_change_is_applied_and_logged_live(controller: ControllerProcess) -> None:
    api = controller.api
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    lines: list[dict] = []
    stop = threading.Event()

    def follow() -> None:
        with controller.http_client(headers=dict(api.headers), timeout=30) as c:
            with connect_sse(c, "GET", f"/api/v1/nodes/{nid}/logs", params={"follow": "true", "limit": "1"}) as src:
                for sse in src.iter_sse():
                    lines.append(json.loads(sse.data)["log"])
                    if stop.is_set():
                        return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    wait_for(lambda: lines, 10, message="first streamed log line")

    r = api.patch(f"/api/v1/nodes/{nid}", json={"agent_settings": {"log_level": "debug", "metrics_interval_seconds": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["agent"]["desired_revision"] == 2
    node = wait_for(lambda: (n := controller.node(nid))["agent"]["applied_revision"] == 2 and n, 15,
                    message="revision 2 applied")
    assert node["agent"]["settings"] == {"log_level": "debug", "metrics_interval_seconds": 2}
    wait_for(lambda: any("revision 2" in l["message"] for l in lines), 10, message="live log of the apply")
    stop.set()

    # a bad value is refused at the edge and changes nothing
    r = api.patch(f"/api/v1/nodes/{nid}", json={"agent_settings": {"log_level": "loud"}})
    assert r.status_code == 422 and "agent_settings.log_level" in r.json()["error"]["details"]
    assert controller.node(nid)["agent"]["desired_revision"] == 2

    # fleet-wide change reaches the node as a new revision
    r = api.put("/api/v1/fleet/agent-settings", json={"metrics_interval_seconds": 5})
    assert r.status_code == 200 and r.json()["metrics_interval_seconds"] == 5
    wait_for(lambda: controller.node(nid)["agent"]["applied_revision"] == 3, 15, message="fleet change applied")


def test_events_stream_shows_node_changes(controller: ControllerProcess) -> None:
    api = controller.api
    events: list[dict] = []

    def follow() -> None:
        with controller.http_client(headers=dict(api.headers), timeout=60) as c:
            with connect_sse(c, "GET", "/api/v1/events") as src:
                for sse in src.iter_sse():
                    assert sse.event == "node"
                    events.append(json.loads(sse.data))
                    if any(e["type"] == "update" and e["node"]["status"] == "running" for e in events[1:]):
                        return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    wait_for(lambda: events, 10, message="initial event")
    assert events[0]["type"] == "initial" and events[0]["nodes"] == []
    nid = controller.create_node()["id"]
    t.join(30)
    types = [e["type"] for e in events]
    assert "create" in types
    assert any(e["type"] == "update" and e["node"]["id"] == nid and e["node"]["status"] == "running" for e in events)


def test_stop_start_reboot(controller: ControllerProcess) -> None:
    api = controller.api
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    first_pid = controller.agent_pid(nid)

    assert api.post(f"/api/v1/nodes/{nid}/stop").status_code == 202
    wait_for(lambda: controller.node(nid)["status"] == "stopped", 20, message="stopped")
    assert not _pid_alive(first_pid)
    wait_for(lambda: not controller.node(nid)["agent"]["online"], 20, message="offline after stop")
    # a stopped node cannot be rebooted
    r = api.post(f"/api/v1/nodes/{nid}/reboot")
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"

    assert api.post(f"/api/v1/nodes/{nid}/start").status_code == 202
    node = controller.wait_running(nid)
    assert node["agent"]["enrolled"]  # same identity: no new enrollment was needed
    second_pid = controller.agent_pid(nid)
    assert second_pid != first_pid

    assert api.post(f"/api/v1/nodes/{nid}/reboot").status_code == 202
    wait_for(lambda: controller.agent_pid(nid) != second_pid and _pid_alive(controller.agent_pid(nid)), 20,
             message="agent restarted by reboot")
    controller.wait_running(nid)


def test_operations_log_records_mutations(controller: ControllerProcess) -> None:
    api = controller.api
    nid = controller.create_node(name="audited")["id"]
    api.post("/api/v1/nodes", json={"region": "nowhere"})
    ops = api.get("/api/v1/operations").json()["items"]
    create = next(o for o in ops if o["action"] == "POST /api/v1/nodes" and o["result"] == "success")
    assert create["actor"] == "admin (key admin)" and create["target_id"] == nid and create["target_type"] == "node"
    assert create["payload"] == {"region": "local", "name": "audited"}
    failed = next(o for o in ops if o["result"] == "fail")
    assert failed["status_code"] == 422 and "unknown region" in failed["error"]
    only = api.get("/api/v1/operations", params={"target_id": nid}).json()
    assert only["total"] == 1 and only["items"][0]["target_id"] == nid


def test_a_relative_data_dir_works_like_make_run(tmp_path) -> None:
    """`make run` keeps the default data dir "data", relative to where it runs; agents run elsewhere."""
    controller = ControllerProcess(tmp_path / "data", relative_data_dir=True)
    try:
        controller.start()
        node = controller.wait_running(controller.create_node(name="rel")["id"])
        assert node["agent"]["enrolled"]
        assert (tmp_path / "data" / "local-nodes" / node["id"] / "state" / "agent.key").exists()
    finally:
        controller.cleanup()


def _wireguard_go_pids(interface: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if argv and argv[0].endswith(b"wireguard-go") and argv[-1] == interface.encode():
                pids.append(int(proc.name))
    return pids


def test_a_stopped_local_node_stops_every_process_it_owns(controller: ControllerProcess) -> None:
    """Issue 10: stopping a local node left its wireguard-go running (its command line names no node file)."""
    from tests.agent.netns import missing_prerequisite
    from controller.providers.local import processes_of

    if missing_prerequisite() is not None:
        pytest.skip(str(missing_prerequisite()))
    node = controller.wait_running(controller.create_node(name="wg-stop")["id"])
    interface = "wgstop0"
    r = controller.api.post("/api/v1/wireguard/servers", json={
        "node_id": node["id"], "name": "wg-stop", "interface": interface, "listen_port": free_udp_port(),
        "ipv4_address": "10.68.0.1/24"})
    assert r.status_code == 201, r.text
    wait_for(lambda: _wireguard_go_pids(interface), 30, message="wireguard-go serving the node's server")
    node_dir = controller.data_dir / "local-nodes" / node["id"]
    owned = processes_of(node_dir)
    assert set(_wireguard_go_pids(interface)) <= set(owned)  # the "machine" knows its wireguard-go
    assert controller.api.post(f"/api/v1/nodes/{node['id']}/stop").status_code == 202
    wait_for(lambda: controller.node(node["id"])["status"] == "stopped", 30, message="node stopped")
    assert _wireguard_go_pids(interface) == [] and processes_of(node_dir) == []
    # and started again, the data plane comes back with it
    assert controller.api.post(f"/api/v1/nodes/{node['id']}/start").status_code == 202
    controller.wait_running(node["id"], timeout=60)
    wait_for(lambda: _wireguard_go_pids(interface), 30, message="wireguard-go back after start")
    controller.api.delete(f"/api/v1/nodes/{node['id']}")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_events_carry_each_nodes_newest_metrics_when_asked(controller: ControllerProcess) -> None:
    """?metrics=true adds `metrics` events (what the fleet overview shows as traffic now); without it the stream
    is as before (seed 003's types only)."""
    api = controller.api
    nid = controller.wait_running(controller.create_node()["id"])["id"]

    def first_metrics(query: str, wanted: int) -> list[dict]:
        got: list[dict] = []
        with controller.http_client(headers=dict(api.headers), timeout=30) as c:
            with connect_sse(c, "GET", f"/api/v1/events{query}") as src:
                for sse in src.iter_sse():
                    got.append(json.loads(sse.data))
                    if sum(e["type"] == "metrics" for e in got) >= wanted:
                        return got
        return got

    # samples every second (tests/controller_process.py): a rate needs two of them
    events = first_metrics("?metrics=true", 3)
    metrics = [e for e in events if e["type"] == "metrics"]
    assert all(e["node_id"] == nid for e in metrics)
    newest = metrics[-1]["metrics"]
    assert 0 <= newest["cpu_percent"] <= 100 and 0 < newest["memory_percent"] <= 100
    assert newest["rx_bytes_per_second"] is not None and newest["rx_bytes_per_second"] >= 0

    plain: list[dict] = []

    def follow_plain() -> None:
        with controller.http_client(headers=dict(api.headers), timeout=30) as c:
            with connect_sse(c, "GET", "/api/v1/events") as src:
                for sse in src.iter_sse():
                    plain.append(json.loads(sse.data))
                    if any(e["type"] == "update" for e in plain):
                        return

    t = threading.Thread(target=follow_plain, daemon=True)
    t.start()
    wait_for(lambda: plain, 10, message="initial event")
    time.sleep(2.5)  # samples keep arriving meanwhile; none may reach a reader that did not ask for them
    assert api.patch(f"/api/v1/nodes/{nid}", json={"agent_settings": {"log_level": "debug"}}).status_code == 200
    t.join(20)
    assert {e["type"] for e in plain} <= {"initial", "update"}
