#!/usr/bin/env python3
"""Subscribers end to end: a real controller, one local node whose agent drives a real V2Ray, N subscribers.

Measured, all through the public API and real traffic on 127.0.0.1:
  - creating N subscribers through POST /api/v1/clients (8 concurrent callers): rate and latency;
  - the node applying all of them: time from the last create until the node reports the revision applied,
    and V2Ray's pid before/after (users are added through V2Ray's API: 0 restarts expected);
  - hot add: one more subscriber, from the POST until its share link carries traffic (p50/p99 over R rounds);
  - block: from the POST until the blocked subscriber's link stops working (p50/p99 over R rounds);
  - usage lag: from the end of a 1 MB download until GET /api/v1/clients/{id} shows it (p50/p99), with the
    agent's telemetry interval given by --metrics-interval (the controller default is 10 s).

    .venv/bin/python bench/subscribers.py --subscribers 10000 --rounds 20
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench.figures import log, mib, pct  # noqa: E402
from controller.providers.local import processes_of  # noqa: E402
from tests.controller_process import ControllerProcess, wait_for  # noqa: E402
from tests.world import enter_for_benchmark  # noqa: E402
from tests.v2ray_lab import client_from_link, fetch  # noqa: E402

MB = 1_000_000


def v2ray_pids(ctl: ControllerProcess, node_id: str) -> list[int]:
    return processes_of(ctl.data_dir / "local-nodes" / node_id, "v2ray")


def link_of(ctl: ControllerProcess, client: dict, protocol: str = "vless") -> str:
    r = ctl.api.get(f"/sub/{client['short_uuid']}", headers={"X-API-Key": ""})
    r.raise_for_status()
    return next(x for x in base64.b64decode(r.text).decode().split() if x.startswith(protocol))


def works(link: str, url: str, timeout: float = 2.0) -> bool:
    with client_from_link(link) as client:
        try:
            return len(fetch(client.socks_port, url, timeout=timeout)) > 0
        except Exception:
            return False


def until(predicate, timeout: float = 60.0, step: float = 0.02) -> float:
    """Seconds until predicate() is true."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(step)
    return time.monotonic() - start


def applied(ctl: ControllerProcess, node_id: str) -> bool:
    agent = ctl.node(node_id)["agent"]
    return agent["in_sync"] and {c["name"]: c["state"] for c in agent["components"]}.get("v2ray") == "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--metrics-interval", type=int, default=1)
    args = parser.parse_args()
    web = enter_for_benchmark()  # the internet host; first: every process started later inherits its network
    if shutil.which("v2ray") is None:
        sys.exit("needs the v2ray binary (apt-get install v2ray)")

    tmp = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-subs-"))
    tmp.chmod(0o701)  # V2Ray's unprivileged user passes through it (agent/dataplane_user.py)
    ctl = ControllerProcess(tmp / "data", env={"VPNFLEET_V2RAY_ENABLED": "1", "VPNFLEET_LOG_LEVEL": "warning",
                                               "VPNFLEET_METRICS_INTERVAL": str(args.metrics_interval)})
    try:
        ctl.start()
        node = ctl.wait_running(ctl.create_node(name="bench")["id"])
        wait_for(lambda: applied(ctl, node["id"]), 30, message="V2Ray up")
        pids_before = v2ray_pids(ctl, node["id"])

        log(f"creating {args.subscribers} subscribers")
        latencies: list[float] = []

        def create(i: int) -> dict:
            t = time.monotonic()
            r = ctl.api.post("/api/v1/clients", json={"username": f"user{i:06d}", "days": 30})
            latencies.append(time.monotonic() - t)
            r.raise_for_status()
            return r.json()

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(create, range(args.subscribers)))
        create_seconds = time.monotonic() - start
        apply_seconds = until(lambda: applied(ctl, node["id"]), timeout=600, step=0.1)
        pids_after = v2ray_pids(ctl, node["id"])
        rss = psutil.Process(pids_after[0]).memory_info().rss if pids_after else 0

        log("hot add / block rounds")
        add, block = [], []
        for i in range(args.rounds):
            t = time.monotonic()
            client = create(args.subscribers + i)
            link = link_of(ctl, client)
            until(lambda: works(link, web.url(1000), timeout=1.0), timeout=30, step=0)
            add.append(time.monotonic() - t)
            t = time.monotonic()
            ctl.api.post(f"/api/v1/clients/{client['id']}/block").raise_for_status()
            until(lambda: not works(link, web.url(1000), timeout=0.5), timeout=30, step=0)
            block.append(time.monotonic() - t)

        log("usage lag rounds")
        lag = []
        subject = clients[0]
        link = link_of(ctl, subject)
        with client_from_link(link) as client:
            for _ in range(args.rounds):
                before = ctl.api.get(f"/api/v1/clients/{subject['id']}").json()["used_download_bytes"]
                fetch(client.socks_port, web.url(MB), timeout=10)
                t = time.monotonic()
                until(lambda: ctl.api.get(f"/api/v1/clients/{subject['id']}").json()["used_download_bytes"]
                      >= before + MB, timeout=60, step=0.05)
                lag.append(time.monotonic() - t)
        pids_end = v2ray_pids(ctl, node["id"])
    finally:
        ctl.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    ms = lambda xs, p: pct(xs, p) * 1000  # noqa: E731
    print(f"subscribers: {args.subscribers}   one local node, real V2Ray 4.34, SQLite")
    print(f"create via API (8 callers): {create_seconds:.1f} s ({args.subscribers / create_seconds:.0f}/s), "
          f"latency p50 {ms(latencies, 50):.0f} ms p99 {ms(latencies, 99):.0f} ms")
    print(f"node applied all {args.subscribers}: {apply_seconds:.2f} s after the last create; V2Ray RSS "
          f"{mib(rss):.0f} MiB")
    print(f"V2Ray processes: before {pids_before} after {pids_after} end {pids_end} "
          f"(restarts: {0 if pids_before == pids_end else 'CHANGED'})")
    print(f"hot add, POST -> link carries traffic ({args.rounds} rounds): p50 {ms(add, 50):.0f} ms "
          f"p99 {ms(add, 99):.0f} ms")
    print(f"block, POST -> link refused ({args.rounds} rounds): p50 {ms(block, 50):.0f} ms "
          f"p99 {ms(block, 99):.0f} ms")
    print(f"usage lag, download done -> API shows it (metrics interval {args.metrics_interval} s): "
          f"p50 {ms(lag, 50):.0f} ms p99 {ms(lag, 99):.0f} ms")


if __name__ == "__main__":
    main()
