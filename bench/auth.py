#!/usr/bin/env python3
"""Auth overhead per request (no credential vs API key vs JWT access token) and the cost of a password check.

One real ``vpnfleet-controller`` (this checkout, HTTPS with its own CA, SQLite, no nodes, rate limits set out of
the way) serves every mode in the same run. Each round measures every mode once, ``--requests`` GETs by
``--concurrency`` callers on keep-alive connections, in an order that rotates from round to round, so a change in
the machine's load hits every mode alike. Modes:

- ``none``: ``GET /api/v1/health`` with no credential: the public route, the baseline;
- ``key`` / ``jwt`` on ``/api/v1/health``: the same route with the admin API key / an access token of the admin
  account (the route then also answers version and agent count: a dict lookup more);
- ``key`` / ``jwt`` on ``/api/v1/regions``: an authenticated read of similar cost (no database query) that also
  runs the route's permission check (``requires(nodes.view)``).

The access token comes from ``POST /api/v1/auth/login`` when the controller has it, else it is signed with the
controller's own key ring (``DATA_DIR/jwt``), which the controller then accepts like any it issued. Printed: a
table of requests/s (median of rounds), latency p50/p95 and controller CPU per request, and the ratios
key/none, jwt/none and jwt/key. Then Argon2id hash and verify times (``controller.passwords.Passwords``, in this
process) at the defaults (``auth.argon2_time_cost`` 3, ``auth.argon2_memory_kib`` 65536) and at the tests'
floor (1, 8192), and, when the login route exists, what a login costs end to end at the defaults.

    .venv/bin/python bench/auth.py                         # 6 rounds x 2000 requests per mode, 8 callers
    .venv/bin/python bench/auth.py --rounds 3 --requests 500 --no-tls
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.api import BenchController, Round, describe  # noqa: E402
from bench.figures import log, pct  # noqa: E402
from controller.passwords import Passwords  # noqa: E402
from controller.tokens import TokenSigner  # noqa: E402

HEALTH, REGIONS, LOGIN = "/api/v1/health", "/api/v1/regions", "/api/v1/auth/login"
#: the defaults of auth.argon2_* (controller/settings/model.py) and the floor tests/controller_process.py sets
ARGON2_DEFAULT, ARGON2_FLOOR = (3, 64 * 1024), (1, 8 * 1024)
#: rate limits out of the way: the bench sends far more than 1,000 requests a minute from one key and address
BENCH_ENV = {"VPNFLEET_RATE_LIMIT_AUTHENTICATED": "10000000", "VPNFLEET_RATE_LIMIT_ANONYMOUS": "10000000",
             "VPNFLEET_RATE_LIMIT_SUBSCRIPTION": "10000000",
             # logins (when measured) cost what they cost in production
             "VPNFLEET_ARGON2_TIME_COST": str(ARGON2_DEFAULT[0]),
             "VPNFLEET_ARGON2_MEMORY_KIB": str(ARGON2_DEFAULT[1])}


@dataclass
class Mode:
    """One way of calling: a credential (or none) on a path."""

    auth: str
    path: str
    headers: dict[str, str]
    rounds: list[Round] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.auth:4} GET {self.path}"

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.rounds)

    @property
    def latencies(self) -> list[float]:
        return [x for r in self.rounds for x in r.latencies]

    @property
    def cpu_per_request(self) -> float:
        return statistics.median(r.cpu_per_request for r in self.rounds)


async def access_token(ctl: BenchController, client: httpx.AsyncClient) -> tuple[str, str]:
    """An access token of the admin account and where it came from: the login route, else signed with the
    controller's key ring (same key, same claims; its session id is one no logout ended)."""
    r = await client.post(LOGIN, json={"username": "admin", "password": ctl.admin_password()})
    if r.status_code in (200, 201):
        body = r.json()
        token = body.get("access_token") or body.get("data", {}).get("access_token")
        if token:
            return token, "POST /api/v1/auth/login"
        raise SystemExit(f"login answered {r.status_code} without an access_token: {sorted(body)}")
    if r.status_code not in (404, 405):
        raise SystemExit(f"POST {LOGIN} -> {r.status_code}: {r.text[:300]}")
    with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
        (admin_id,) = db.execute("select id from accounts where username = 'admin'").fetchone()
    signer = TokenSigner(ctl.data_dir / "jwt", 3600, dt.timedelta(days=3650))
    signer.load()
    return signer.issue(admin_id, str(uuid.uuid4()), ttl=3600), "signed with DATA_DIR/jwt (no login route yet)"


async def measure(ctl: BenchController, mode: Mode, requests: int, concurrency: int) -> Round:
    """``requests`` GETs of ``mode`` by ``concurrency`` callers; connections open before the clock starts."""
    latencies: list[float] = []
    counter = iter(range(requests))
    proc = psutil.Process(ctl.proc.pid)  # type: ignore[union-attr]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def caller(client: httpx.AsyncClient) -> None:
        for _ in counter:  # one shared iterator: callers take the next request when they are free
            t = time.perf_counter()
            r = await client.get(mode.path)
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{mode.label} -> {r.status_code}: {r.text[:300]}")

    async with httpx.AsyncClient(base_url=ctl.url, headers=mode.headers, verify=ctl.verify(), timeout=60.0,
                                 limits=limits, trust_env=False) as client:
        await asyncio.gather(*(client.get(mode.path) for _ in range(concurrency)))  # handshakes, unmeasured
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    return Round(seconds, latencies, cpu, proc.memory_info().rss)


async def login_cost(ctl: BenchController, n: int) -> list[float] | None:
    """Seconds per successful ``POST /api/v1/auth/login`` (one at a time), or None without the route."""
    times: list[float] = []
    async with httpx.AsyncClient(base_url=ctl.url, verify=ctl.verify(), timeout=60.0, trust_env=False) as client:
        for _ in range(n):
            t = time.perf_counter()
            r = await client.post(LOGIN, json={"username": "admin", "password": ctl.admin_password()})
            if r.status_code in (404, 405):
                return None
            if r.status_code not in (200, 201):
                raise RuntimeError(f"POST {LOGIN} -> {r.status_code}: {r.text[:300]}")
            times.append(time.perf_counter() - t)
    return times


async def argon2_cost(time_cost: int, memory_kib: int, n: int) -> tuple[float, float]:
    """Median seconds of one Argon2id hash and one verify with these parameters (parallelism as configured)."""
    passwords = Passwords(time_cost, memory_kib)
    hashes, verifies = [], []
    password = "correct horse battery staple 42"
    for _ in range(n):
        t = time.perf_counter()
        stored = await passwords.hash(password)
        hashes.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert await passwords.verify(stored, password)
        verifies.append(time.perf_counter() - t)
    return statistics.median(hashes), statistics.median(verifies)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.2f}"


async def run(ctl: BenchController, args: argparse.Namespace) -> None:
    async def fresh_token() -> str:
        """A token per round (outside the clock), so a long run never outlives the access-token lifetime."""
        nonlocal token_source
        async with httpx.AsyncClient(base_url=ctl.url, verify=ctl.verify(), timeout=60.0, trust_env=False) as c:
            token, token_source = await access_token(ctl, c)
        for mode in modes:
            if mode.auth == "jwt":
                mode.headers = {"Authorization": f"Bearer {token}"}
        return token

    token_source = ""
    key = {"X-API-Key": ctl.admin_key()}
    modes = [Mode("none", HEALTH, {}), Mode("key", HEALTH, key), Mode("jwt", HEALTH, {}),
             Mode("key", REGIONS, key), Mode("jwt", REGIONS, {})]
    await fresh_token()
    for mode in modes:  # warm-up, not recorded
        await measure(ctl, mode, min(args.requests, 300), args.concurrency)
    for k in range(args.rounds):
        await fresh_token()
        order = modes[k % len(modes):] + modes[:k % len(modes)]
        log(f"round {k + 1}/{args.rounds}: " + ", ".join(m.label for m in order))
        for mode in order:
            mode.rounds.append(await measure(ctl, mode, args.requests, args.concurrency))
    logins = await login_cost(ctl, args.logins) if args.logins else None

    print(f"controller: {describe(ctl.repo)}   {'https' if ctl.tls else 'http'}, SQLite, no nodes   "
          f"{psutil.cpu_count()} CPUs shared by the bench client and the controller")
    print(f"{args.rounds} interleaved rounds x {args.requests} requests per mode, {args.concurrency} callers "
          f"(keep-alive); access token: {token_source}")
    print()
    print(f"{'mode':<29} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/req':>11}   rounds req/s")
    for m in modes:
        lat = m.latencies
        print(f"{m.label:<29} {m.rps:>8.0f} {ms(pct(lat, 50)):>8} {ms(pct(lat, 95)):>8} "
              f"{ms(m.cpu_per_request):>11}   " + " ".join(f"{r.rps:.0f}" for r in m.rounds))
    none, hkey, hjwt, rkey, rjwt = modes

    def paired(a: Mode, b: Mode, of: str) -> float:
        """Median over rounds of a/b: both are measured in the same round, seconds apart, so load drift cancels."""
        return statistics.median(getattr(x, of) / getattr(y, of) for x, y in zip(a.rounds, b.rounds))

    def ratios(key_mode: Mode, jwt_mode: Mode, what: str) -> None:
        print(f"  {what}: requests/s key/none {paired(key_mode, none, 'rps'):.3f}  jwt/none "
              f"{paired(jwt_mode, none, 'rps'):.3f}  jwt/key {paired(jwt_mode, key_mode, 'rps'):.3f}   "
              f"CPU per request key/none {paired(key_mode, none, 'cpu_per_request'):.3f}  jwt/none "
              f"{paired(jwt_mode, none, 'cpu_per_request'):.3f}  jwt/key "
              f"{paired(jwt_mode, key_mode, 'cpu_per_request'):.3f}")
    print()
    print("ratios, median over rounds of the round's ratio (requests/s: below 1 is slower; CPU per request: "
          "above 1 costs more)")
    ratios(hkey, hjwt, f"same route  ({HEALTH})           ")
    ratios(rkey, rjwt, f"authenticated {REGIONS} vs none on {HEALTH}")
    print(f"  auth overhead per request (controller CPU over none, same route): key "
          f"{ms(hkey.cpu_per_request - none.cpu_per_request)} ms, jwt {ms(hjwt.cpu_per_request - none.cpu_per_request)} ms")

    print()
    print("Argon2id (controller.passwords.Passwords, parallelism 4, in the bench process), median of runs:")
    for (time_cost, memory_kib), n, what in ((ARGON2_DEFAULT, args.argon2_runs, "defaults"),
                                              (ARGON2_FLOOR, args.argon2_runs * 3, "test floor")):
        h, v = await argon2_cost(time_cost, memory_kib, n)
        print(f"  {what:<10} time_cost {time_cost} memory {memory_kib // 1024} MiB: hash {ms(h)} ms  verify {ms(v)} ms"
              f"  ({n} runs; {1 / v:.0f} checks/s one at a time)")
    if logins is None:
        print(f"  login end to end: not measured ({LOGIN} does not exist in this controller yet)")
    else:
        print(f"  login end to end at the defaults (POST {LOGIN}, one at a time, {len(logins)} logins): "
              f"p50 {ms(pct(logins, 50))} ms  max {ms(max(logins))} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per mode per round (2000)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (6)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent callers (8)")
    parser.add_argument("--argon2-runs", type=int, default=10, help="hash+verify runs at the defaults (10; 3x at "
                                                                     "the floor)")
    parser.add_argument("--logins", type=int, default=10, help="logins measured end to end, if the route exists")
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True,
                        help="HTTPS with the controller's own certificate (the product's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vpnfleet-bench-auth-"))
    ctl = BenchController(tmp / "data", REPO, args.tls)
    ctl.env.update(BENCH_ENV)
    try:
        ctl.start()
        asyncio.run(run(ctl, args))
    finally:
        ctl.cleanup()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
