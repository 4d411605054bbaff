"""Controller restarts and crashes: nodes stay, agents reconnect on their own, nothing is duplicated or lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading

from httpx_sse import connect_sse

from tests.controller_process import ControllerProcess, wait_for


def _db(controller: ControllerProcess, sql: str, *args) -> list[tuple]:  # noqa: ANN002
    with sqlite3.connect(controller.data_dir / "vpnfleet.db") as conn:
        return conn.execute(sql, args).fetchall()


def test_restart_keeps_nodes_and_agents_reconnect(controller: ControllerProcess) -> None:
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    pid = controller.agent_pid(nid)
    wait_for(lambda: _db(controller, "select telemetry_seq from nodes where uuid=?", nid)[0][0] >= 2, 15,
             message="some telemetry stored")
    epoch = _db(controller, "select session_epoch from nodes where uuid=?", nid)[0][0]

    # SIGTERM: SSE readers are told, agents are told, the controller exits cleanly
    events: list[dict] = []

    def follow() -> None:
        with controller.http_client(headers=dict(controller.api.headers), timeout=30) as c:
            with connect_sse(c, "GET", "/api/v1/events") as src:
                for sse in src.iter_sse():
                    events.append(json.loads(sse.data))

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    wait_for(lambda: events, 10, message="initial event")
    # uvicorn re-raises the signal after its graceful shutdown, as a service should
    assert controller.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in controller.log()
    t.join(10)
    assert events[-1]["type"] == "shutdown"

    # the agent was told, and it (the data plane) did not stop with the controller
    agent_out = controller.data_dir / "local-nodes" / nid / "agent.out"
    wait_for(lambda: "controller is shutting down" in agent_out.read_text(), 10, message="agent told of shutdown")
    assert controller.agent_pid(nid) == pid
    seq_before = _db(controller, "select telemetry_seq from nodes where uuid=?", nid)[0][0]

    controller.start()
    # the agent reconnects by itself (backoff with jitter, capped)
    wait_for(lambda: _db(controller, "select session_epoch from nodes where uuid=?", nid)[0][0] > epoch, 40,
             message="agent reconnected with a new session epoch")
    node = controller.wait_running(nid)
    assert controller.agent_pid(nid) == pid, "the agent must not be restarted"
    assert controller.api.get("/api/v1/nodes").json()["total"] == 1
    assert node["agent"]["applied_revision"] == node["agent"]["desired_revision"]

    # telemetry produced while the controller was down is delivered, exactly once: the stored samples
    # equal the number of distinct batches (one sample per batch)
    wait_for(lambda: _db(controller, "select telemetry_seq from nodes where uuid=?", nid)[0][0] > seq_before + 1, 15,
             message="telemetry after restart")
    seq, dropped = _db(controller, "select telemetry_seq, telemetry_dropped from nodes where uuid=?", nid)[0]
    samples = _db(controller, "select coalesce(sum(samples),0) from metric_buckets where node_uuid=?", nid)[0][0]
    assert dropped == 0
    # the newest batches may still be in flight; none may be stored twice
    assert samples <= seq and samples >= seq_before


def test_kill_9_during_create_is_resumed(controller: ControllerProcess) -> None:
    created = controller.create_node()
    nid = created["id"]
    controller.stop(signal.SIGKILL)  # the create's driver dies with it, wherever it was
    controller.start()
    node = controller.wait_running(nid, timeout=40)
    assert node["status"] == "running"
    # exactly one node and one agent for it
    assert controller.api.get("/api/v1/nodes").json()["total"] == 1
    pid = controller.agent_pid(nid)
    import psutil

    agents = [p for p in psutil.process_iter(["cmdline"])
              if p.info["cmdline"] and str(controller.data_dir / "local-nodes" / nid / "agent.yaml") in p.info["cmdline"]]
    assert [p.pid for p in agents] == [pid]


def test_stale_node_goes_offline_after_missed_heartbeats(controller: ControllerProcess) -> None:
    nid = controller.wait_running(controller.create_node()["id"])["id"]
    import os

    os.kill(controller.agent_pid(nid), signal.SIGSTOP)  # alive but silent, like a hung machine
    try:
        # heartbeat 2 s x 3 missed + 2 s grace
        node = wait_for(lambda: (n := controller.node(nid)) and not n["agent"]["online"] and n, 20,
                        message="offline")
        assert node["status"] == "running"
    finally:
        os.kill(controller.agent_pid(nid), signal.SIGCONT)
    controller.wait_running(nid, timeout=40)
