#!/usr/bin/env python3
"""REST API read throughput: ``GET /api/v1/clients?size=100`` against a real controller with N subscribers.

A real ``vpnfleet-controller`` process (SQLite, no nodes) gets N subscribers through ``POST /api/v1/clients``
(concurrent callers); then a fixed number of list requests, spread over every page, is sent by a fixed number
of concurrent callers (one asyncio process, one keep-alive connection per caller). Printed: requests/s, latency
p50/p95/p99/max, the controller's CPU per request and % of one core, and its RSS over the measurement.

``--tls`` starts the controller with ``VPNFLEET_TLS_ENABLED=1`` and measures over HTTPS, trusting only the
controller's CA (``DATA_DIR/pki/ca.crt``); a controller that does not serve TLS yet is measured plain, and the
report says so. ``--at REF`` measures a worktree of REF instead of this checkout. ``--compare REF`` also
measures a git worktree of REF (made under /tmp, removed at the end) in the same run: both controllers run
side by side and the rounds alternate between them, so the printed ratio compares the two on the same
machine at the same time.

    .venv/bin/python bench/api.py --subscribers 10000 --requests 500 --rounds 6 --concurrency 8
    .venv/bin/python bench/api.py --compare 8cc16f8 --tls
    .venv/bin/python bench/api.py --at ec18e65          # one commit only (this checkout untouched)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.figures import log, mib, pct  # noqa: E402
from tests.controller_process import ControllerProcess, wait_for  # noqa: E402

LIST_PATH = "/api/v1/clients"


class BenchController(ControllerProcess):
    """A controller from any checkout (``repo``), over HTTP or, when it serves it, HTTPS.

    ControllerProcess runs this checkout; here cwd and PYTHONPATH point at ``repo`` (a worktree of another
    commit with --compare/--at), and the health probe accepts either scheme, so that a controller that
    ignores VPNFLEET_TLS_ENABLED (one from before TLS) is found out rather than waited for.
    """

    def __init__(self, data_dir: Path, repo: Path, tls: bool) -> None:
        env = {"VPNFLEET_LOG_LEVEL": "warning", "VPNFLEET_LOCAL_ENABLED": "0",
               "VPNFLEET_INSTANCE_SYNC_INTERVAL": "3600", "VPNFLEET_TLS_ENABLED": "1" if tls else "0"}
        super().__init__(data_dir, env=env)
        self.repo = repo
        self.cwd = repo
        self.env["PYTHONPATH"] = str(repo)
        self.tls_requested = tls
        self.scheme = ""  # "https" or "http": what the controller actually answered on

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        for scheme in (("https", "http") if self.tls_requested else ("http",)):
            try:
                # liveness probe only (which scheme answers); the measuring client verifies the certificate
                r = httpx.get(f"{scheme}://127.0.0.1:{self.http_port}/api/v1/health", timeout=1.0, verify=False)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                self.scheme = scheme
                return True
        return False

    def start(self, timeout: float = 60.0) -> "BenchController":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "controller.main"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd)
        wait_for(self._healthy, timeout, message=f"controller health (log: {self.log_path})")
        self.url = f"{self.scheme}://127.0.0.1:{self.http_port}"
        self.tls = self.scheme == "https"  # what it serves, whatever was asked
        return self

    def verify(self) -> ssl.SSLContext | bool:
        """What clients trust: the controller's own CA under TLS (hostname checked), nothing over HTTP."""
        if not self.tls:
            return False
        ca = self.data_dir / "pki" / "ca.crt"
        if not ca.exists():
            raise SystemExit(f"controller serves TLS but {ca} does not exist: nothing to trust")
        return ssl.create_default_context(cafile=str(ca))

    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def async_client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=self.url, headers={"X-API-Key": self.admin_key()}, timeout=60.0,
                                 verify=self.verify(), limits=limits, trust_env=False)


@dataclass
class Round:
    """One measurement: fixed requests at fixed concurrency."""

    seconds: float
    latencies: list[float]
    cpu_seconds: float
    rss: int

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_per_request(self) -> float:
        """Controller CPU seconds per request: what the HTTP layer costs, much less sensitive than req/s to
        other load on the machine (which takes the controller's CPU time, not its CPU work)."""
        return self.cpu_seconds / len(self.latencies)


@dataclass
class Side:
    """One controller under test and its rounds."""

    label: str
    ctl: BenchController
    commit: str = ""
    create_seconds: float = 0.0
    create_latencies: list[float] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)


async def create_subscribers(ctl: BenchController, n: int, concurrency: int) -> tuple[float, list[float]]:
    """N subscribers through the API, ``concurrency`` callers at once; returns wall seconds and latencies."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def caller(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t = time.perf_counter()
            r = await client.post(LIST_PATH, json={"username": f"user{i:06d}", "days": 30,
                                                   "note": f"bench subscriber {i}", "data_limit_gb": 50})
            latencies.append(time.perf_counter() - t)
            if r.status_code != 201:
                raise RuntimeError(f"POST {LIST_PATH} -> {r.status_code}: {r.text[:300]}")
            if len(latencies) % 2000 == 0:
                log(f"  {len(latencies)}/{n} created")

    start = time.perf_counter()
    async with ctl.async_client(concurrency) as client:
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def measure(ctl: BenchController, requests: int, concurrency: int, size: int, pages: int,
                  offset: int) -> Round:
    """``requests`` GETs of list pages (request i reads page 1 + (offset + i) % pages) by ``concurrency`` callers."""
    latencies: list[float] = []
    counter = iter(range(requests))
    proc = psutil.Process(ctl.proc.pid)

    async def caller(client: httpx.AsyncClient) -> None:
        for i in counter:  # one shared iterator: callers take the next request number when they are free
            page = 1 + (offset + i) % pages
            t = time.perf_counter()
            r = await client.get(LIST_PATH, params={"size": size, "page": page})
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"GET {LIST_PATH}?size={size}&page={page} -> {r.status_code}: {r.text[:300]}")
            body = r.json()
            if len(body["items"]) != min(size, body["total"] - (page - 1) * size):
                raise RuntimeError(f"page {page}: {len(body['items'])} items of total {body['total']}")

    async with ctl.async_client(concurrency) as client:
        # connections open (and TLS handshakes happen) before the clock starts: this measures requests
        await asyncio.gather(*(client.get(LIST_PATH, params={"size": 1}) for _ in range(concurrency)))
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    return Round(seconds, latencies, cpu, proc.memory_info().rss)


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached git worktree of ``ref`` under /tmp, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-before-"))
    path.rmdir()  # git worktree add wants to create it
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git worktree add {ref}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def describe(repo: Path) -> str:
    """The commit a checkout is at, plus "+ uncommitted changes" when its tree is dirty."""
    head = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return f"{head[:70]}{' + uncommitted changes' if dirty else ''}"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def report(side: Side, args: argparse.Namespace) -> list[str]:
    lat = [x for r in side.rounds for x in r.latencies]
    rps = [r.rps for r in side.rounds]
    cpu = sum(r.cpu_seconds for r in side.rounds) / sum(r.seconds for r in side.rounds)
    scheme = "https" if side.ctl.tls else "http"
    note = "" if side.ctl.tls or not args.tls else "  (TLS requested, not served by this controller: plain)"
    return [
        f"[{side.label}] {side.commit}",
        f"  transport {scheme}{note}",
        f"  create {args.subscribers} via POST {LIST_PATH} ({args.create_concurrency} callers): "
        f"{side.create_seconds:.1f} s ({args.subscribers / side.create_seconds:.0f}/s), latency p50 "
        f"{ms(pct(side.create_latencies, 50))} ms p99 {ms(pct(side.create_latencies, 99))} ms",
        f"  GET {LIST_PATH}?size={args.size} ({len(side.rounds)} rounds x {args.requests} requests, "
        f"{args.concurrency} callers): {statistics.median(rps):.1f} req/s median (rounds "
        + ", ".join(f"{x:.1f}" for x in rps) + ")",
        f"  latency p50 {ms(pct(lat, 50))} ms  p95 {ms(pct(lat, 95))} ms  p99 {ms(pct(lat, 99))} ms  "
        f"max {ms(max(lat))} ms",
        f"  controller CPU {ms(statistics.median(r.cpu_per_request for r in side.rounds))} ms per request "
        f"(median of rounds), {100 * cpu:.0f} % of one core while measured, RSS {mib(side.rounds[-1].rss):.0f} MiB",
    ]


async def run(sides: list[Side], args: argparse.Namespace) -> None:
    pages = max(1, -(-args.subscribers // args.size))
    for side in sides:
        log(f"[{side.label}] creating {args.subscribers} subscribers")
        side.create_seconds, side.create_latencies = await create_subscribers(
            side.ctl, args.subscribers, args.create_concurrency)
    for side in sides:  # warm-up (not recorded): SQLite page cache, Python's first calls
        await measure(side.ctl, min(args.requests, 200), args.concurrency, args.size, pages, 0)
    for k in range(args.rounds):
        # alternate which side goes first, so neither is always measured right after the other
        for side in (sides if k % 2 == 0 else sides[::-1]):
            log(f"[{side.label}] round {k + 1}/{args.rounds}")
            side.rounds.append(await measure(side.ctl, args.requests, args.concurrency, args.size, pages,
                                             offset=k * args.requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500, help="list requests per round (500)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent list callers (8)")
    parser.add_argument("--create-concurrency", type=int, default=16, help="concurrent create callers (16)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="measurement rounds per controller (6); with --compare they alternate, so a change "
                             "in the machine's load hits both sides")
    parser.add_argument("--size", type=int, default=100, help="page size (100)")
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, default=False,
                        help="serve the REST API over HTTPS (VPNFLEET_TLS_ENABLED=1); plain when unsupported")
    parser.add_argument("--compare", metavar="REF", help="also measure a worktree of this commit, same run")
    parser.add_argument("--at", metavar="REF", help="measure a worktree of this commit instead of this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-api-"))
    sides: list[Side] = []
    with contextlib.ExitStack() as stack:
        if args.compare:
            before = stack.enter_context(worktree(args.compare))
            sides.append(Side("before", BenchController(tmp / "before", before, args.tls)))
        this = stack.enter_context(worktree(args.at)) if args.at else REPO
        sides.append(Side("after" if args.compare else "this", BenchController(tmp / "this", this, args.tls)))
        try:
            for side in sides:
                side.commit = describe(side.ctl.repo)
                side.ctl.start()
                if args.tls and not side.ctl.tls:
                    log(f"[{side.label}] TLS requested but this controller does not serve it "
                        "(VPNFLEET_TLS_ENABLED ignored): measuring plain HTTP")
            asyncio.run(run(sides, args))
        finally:
            for side in sides:
                side.ctl.cleanup()
            if args.keep:
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    print(f"subscribers: {args.subscribers}   SQLite, no nodes   {psutil.cpu_count()} CPUs shared by the "
          "bench client and the controller(s)")
    for side in sides:
        print("\n".join(report(side, args)))
    if len(sides) == 2:
        before, after = (statistics.median(r.rps for r in s.rounds) for s in sides)
        p50b, p50a = (pct([x for r in s.rounds for x in r.latencies], 50) for s in sides)
        cpub, cpua = (statistics.median(r.cpu_per_request for r in s.rounds) for s in sides)
        print(f"ratio after/before: requests/s {after / before:.2f}   p50 latency {p50a / p50b:.2f}   "
              f"controller CPU per request {cpua / cpub:.2f}")


if __name__ == "__main__":
    main()
