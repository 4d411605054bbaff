#!/usr/bin/env python3
"""What a login costs: ``POST /api/v1/auth/login`` against a real controller at the DEFAULT Argon2id parameters
(``auth.argon2_time_cost`` 3, ``auth.argon2_memory_kib`` 65536, parallelism 4), and Argon2 alone.

One ``vpnfleet-controller`` (this checkout, HTTPS with its own CA, SQLite, no nodes; rate limits and the
lockout set out of the way) gets ``--logins`` sign-ins of the admin account, one after another on a keep-alive
connection (sequential: the figure is the latency of one login on an idle controller), then the same number with
a wrong password and with a name that has no account (these should cost the same: that is what keeps the answer
from telling whether a name exists). Then ``--concurrency`` callers at once, for logins per second. Then, in this
process, Argon2id hash and verify times with the same parameters (``controller.passwords.Passwords``).

    .venv/bin/python bench/login.py                 # 30 logins per kind, 4 concurrent callers
    .venv/bin/python bench/login.py --logins 100 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.passwords import Passwords  # noqa: E402
from tests.controller_process import ControllerProcess  # noqa: E402

TIME_COST, MEMORY_KIB = 3, 64 * 1024


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):6.1f} ms  p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms  (n={len(ms)})"


def timed_logins(client: httpx.Client, username: str, password: str, n: int, expect: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        out.append(time.perf_counter() - start)
        assert r.status_code == expect, (r.status_code, r.text)
    return out


async def concurrent_logins(ctl: ControllerProcess, password: str, n: int, callers: int) -> tuple[float, list[float]]:
    """n logins by ``callers`` at once: (logins per second, latencies)."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def caller(client: httpx.AsyncClient) -> None:
        for _ in queue:
            start = time.perf_counter()
            r = await client.post("/api/v1/auth/login", json={"username": "admin", "password": password})
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text

    clients = [httpx.AsyncClient(base_url=ctl.url, verify=ctl.verify(), timeout=60) for _ in range(callers)]
    try:
        start = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in clients))
        elapsed = time.perf_counter() - start
    finally:
        for c in clients:
            await c.aclose()
    return n / elapsed, latencies


def argon2_alone(n: int) -> tuple[list[float], list[float]]:
    passwords = Passwords(TIME_COST, MEMORY_KIB)
    hashes, verifies = [], []
    digest = ""
    for _ in range(n):
        start = time.perf_counter()
        digest = asyncio.run(passwords.hash("correct horse battery staple"))
        hashes.append(time.perf_counter() - start)
    for _ in range(n):
        start = time.perf_counter()
        asyncio.run(passwords.verify(digest, "correct horse battery staple"))
        verifies.append(time.perf_counter() - start)
    return hashes, verifies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=30, help="sign-ins per kind (30)")
    parser.add_argument("--concurrency", type=int, default=4, help="callers at once in the throughput run (4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vpnfleet-bench-login-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text("auth:\n  max_login_attempts: 1000\n  lockout_seconds: 1\n")
        ctl = ControllerProcess(Path(tmp) / "data", config=config, env={
            "VPNFLEET_ARGON2_TIME_COST": str(TIME_COST), "VPNFLEET_ARGON2_MEMORY_KIB": str(MEMORY_KIB),
            "VPNFLEET_LOG_LEVEL": "warning", "VPNFLEET_LOCAL_ENABLED": "0"})
        try:
            ctl.start(timeout=60)
            password = ctl.admin_password()
            with ctl.http_client(timeout=60) as client:
                timed_logins(client, "admin", password, 3, 200)  # warm-up: connection, caches
                ok = timed_logins(client, "admin", password, args.logins, 200)
                wrong = timed_logins(client, "admin", "Wrong-passw0rd!", args.logins, 401)
                unknown = timed_logins(client, "nobody-by-this-name", "Wrong-passw0rd!", args.logins, 401)
            rate, latencies = asyncio.run(concurrent_logins(ctl, password, args.logins * 2, args.concurrency))
        finally:
            ctl.cleanup()
    hashes, verifies = argon2_alone(max(5, args.logins // 3))
    print(f"Argon2id time_cost={TIME_COST} memory={MEMORY_KIB // 1024} MiB parallelism=4 (the defaults)")
    print(f"  POST /login, right password : {percentiles(ok)}")
    print(f"  POST /login, wrong password : {percentiles(wrong)}")
    print(f"  POST /login, unknown name   : {percentiles(unknown)}")
    print(f"  {args.concurrency} callers at once       : {rate:6.1f} logins/s; {percentiles(latencies)}")
    print(f"  Argon2id hash alone         : {percentiles(hashes)}")
    print(f"  Argon2id verify alone       : {percentiles(verifies)}")


if __name__ == "__main__":
    main()
