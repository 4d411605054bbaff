"""Rate limits (issue 12 item 6, seed 001) on a real controller: 30/min per key or account, 10/min per anonymous
address, 5/min per address on /sub/, a key's own limit; X-RateLimit-* on every answer; a 429 reaches no route.

One controller serves the module; each test counts in buckets of its own (its own key, account or loopback
source address), so the tests do not depend on each other's order. Nothing sleeps a minute: counts are checked
against what the refill rate allows over the measured time, and Remaining/Reset against the headers' clock.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import httpx
import pytest

from controller.tokens import TokenSigner
from tests.controller_process import ControllerProcess

AUTHENTICATED, ANONYMOUS, SUBSCRIPTION = 30, 10, 5
ENV = {"VPNFLEET_RATE_LIMIT_AUTHENTICATED": str(AUTHENTICATED), "VPNFLEET_RATE_LIMIT_ANONYMOUS": str(ANONYMOUS),
       "VPNFLEET_RATE_LIMIT_SUBSCRIPTION": str(SUBSCRIPTION)}
#: the "monitor" key's own limit, and the "bursty" key's rate and burst
OWN_LIMIT = 7
BURSTY_RATE, BURSTY_BURST = 6, 12
HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass
class Fleet:
    ctl: ControllerProcess
    #: key name -> the key: "admin" (made at first start) and KEY_BODIES', all of the admin account
    keys: dict[str, str]
    admin_id: int


#: the keys the fixture makes through POST /api/v1/auth/api-keys (seed 001's body)
KEY_BODIES = {
    "spare": {"name": "spare", "access_level": "full"},  # the account's default limit, a bucket of its own
    "monitor": {"name": "monitor", "rate_limit": {"requests_per_minute": OWN_LIMIT}},
    "bursty": {"name": "bursty", "rate_limit": {"requests_per_minute": BURSTY_RATE, "burst_limit": BURSTY_BURST}},
}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The controller with three more keys of the admin account, restarted once they are made so that every
    bucket (the admin key's too) starts full, and the keys are the ones the directory loads at start."""
    ctl = ControllerProcess(tmp_path_factory.mktemp("rate-limits") / "data", env=ENV)
    try:
        ctl.start()
        keys = {"admin": ctl.admin_key()}
        for name, body in KEY_BODIES.items():
            r = ctl.api.post("/api/v1/auth/api-keys", json=body)
            assert r.status_code == 201, r.text
            assert r.json()["rate_limit"] == ({"burst_limit": None, **body["rate_limit"]}  # type: ignore[dict-item]
                                              if "rate_limit" in body else None)
            keys[name] = r.json()["api_key"]
        ctl.restart()
        with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
            (admin_id,) = db.execute("select id from accounts where username = 'admin'").fetchone()
        yield Fleet(ctl, keys, admin_id)
    finally:
        ctl.cleanup()


def client(ctl: ControllerProcess, source: str = "127.0.0.1", **kwargs: object) -> httpx.Client:
    """A client whose connections come from ``source`` (any 127/8 address: each is its own anonymous caller)."""
    transport = httpx.HTTPTransport(local_address=source, verify=ctl.verify())
    return httpx.Client(base_url=ctl.url, transport=transport, timeout=10, **kwargs)  # type: ignore[arg-type]


def limits(r: httpx.Response) -> tuple[int, int, int]:
    """(Limit, Remaining, Reset) of a response; fails the test when one is missing or not an integer."""
    missing = [h for h in HEADERS if h not in r.headers]
    assert not missing, f"{r.request.method} {r.request.url.path} -> {r.status_code} lacks {missing}"
    return int(r.headers["x-ratelimit-limit"]), int(r.headers["x-ratelimit-remaining"]), \
        int(r.headers["x-ratelimit-reset"])


def until_refused(c: httpx.Client, path: str, most: int = 200, **kwargs: object) -> tuple[list[httpx.Response], float]:
    """GET ``path`` until a 429; every response (the 429 last) and the seconds it took."""
    start = time.monotonic()
    answers: list[httpx.Response] = []
    for _ in range(most):
        answers.append(c.get(path, **kwargs))  # type: ignore[arg-type]
        if answers[-1].status_code == 429:
            return answers, time.monotonic() - start
    raise AssertionError(f"{path}: no 429 in {most} requests (last {answers[-1].status_code})")


def assert_allowed_count(allowed: int, capacity: int, per_minute: int, seconds: float) -> None:
    """A full bucket allows ``capacity`` at once plus what refilled while the requests ran (per_minute/60 a s)."""
    most = capacity + math.ceil(seconds * per_minute / 60) + 1
    assert capacity <= allowed <= most, f"{allowed} allowed in {seconds:.2f} s; expected {capacity}..{most}"


def assert_seed_429(r: httpx.Response, limit: int, capacity: int | None = None) -> int:
    """Seed 001's refusal: 429 RATE_LIMIT_EXCEEDED with limit/remaining/reset_time/retry_after, Retry-After and
    the X-RateLimit-* headers agreeing with it. Returns retry_after."""
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED" and error["request_id"] == r.headers["x-request-id"]
    details = error["details"]
    assert set(details) == {"limit", "remaining", "reset_time", "retry_after"}
    retry_after = details["retry_after"]
    assert details["limit"] == limit and details["remaining"] == 0
    assert isinstance(retry_after, int) and 1 <= retry_after <= math.ceil(60 / limit)
    assert r.headers["retry-after"] == r.headers["x-ratelimit-retry-after"] == str(retry_after)
    header_limit, remaining, reset = limits(r)
    assert (header_limit, remaining) == (limit, 0)
    assert details["reset_time"].endswith("Z")
    assert dt.datetime.fromisoformat(details["reset_time"].replace("Z", "+00:00")).timestamp() == reset
    # an empty bucket is full again when its capacity has refilled: a minute from now unless a burst sizes it
    assert abs(reset - (time.time() + 60 * (capacity or limit) / limit)) <= 3
    return retry_after


def test_every_answer_carries_the_headers_of_its_bucket(fleet: Fleet) -> None:
    ctl = fleet.ctl
    with client(ctl, "127.0.0.3") as anon, client(ctl, "127.0.0.3", headers={"X-API-Key": fleet.keys["spare"]}) as key:
        answers = [
            (anon.get("/api/v1/health"), 200, ANONYMOUS),
            (anon.get("/openapi.json"), 200, ANONYMOUS),
            (anon.get("/api/v1/nodes"), 401, ANONYMOUS),  # no key: counted for the address
            (anon.get("/api/v1/nodes", headers={"X-API-Key": "vpf_not-a-key"}), 401, ANONYMOUS),
            (anon.get("/api/v1/no-such-route"), 401, ANONYMOUS),
            (anon.get(f"/sub/{uuid.uuid4().hex[:12]}"), 404, SUBSCRIPTION),
            (key.get("/api/v1/regions"), 200, AUTHENTICATED),
            (key.get("/api/v1/nodes/999999"), 404, AUTHENTICATED),
            (key.get("/api/v1/no-such-route"), 404, AUTHENTICATED),
            (key.post("/api/v1/clients", json={"username": ""}), 422, AUTHENTICATED),
        ]
        refused = until_refused(anon, "/sub/x")[0][-1]
    answers.append((refused, 429, SUBSCRIPTION))
    now = time.time()
    remaining_by_limit: dict[int, list[int]] = {}
    for r, status, limit in answers:
        assert r.status_code == status, (r.request.url.path, r.text)
        header_limit, remaining, reset = limits(r)
        assert header_limit == limit, r.request.url.path
        assert 0 <= remaining < limit and now - 2 <= reset <= now + 61
        if status != 429:
            remaining_by_limit.setdefault(limit, []).append(remaining)
    # one bucket each, counting down from full (a token may refill between two answers, never more)
    for limit, remaining in remaining_by_limit.items():
        assert remaining[0] == limit - 1 and all(b in (a - 1, a) for a, b in zip(remaining, remaining[1:])), \
            (limit, remaining)
    assert remaining_by_limit[ANONYMOUS][-1] <= ANONYMOUS - 4


def test_a_key_gets_its_limit_then_429s_that_reach_no_route(fleet: Fleet) -> None:
    ctl = fleet.ctl
    with client(ctl, headers={"X-API-Key": fleet.keys["admin"]}) as admin:
        answers, seconds = until_refused(admin, "/api/v1/regions")
        allowed, refused = answers[:-1], answers[-1]
        assert all(r.status_code == 200 for r in allowed)
        assert_allowed_count(len(allowed), AUTHENTICATED, AUTHENTICATED, seconds)
        limit, remaining, reset = limits(allowed[0])
        assert (limit, remaining) == (AUTHENTICATED, AUTHENTICATED - 1)
        assert abs(reset - (time.time() + 60 / AUTHENTICATED)) <= 3  # one request short of full: 2 s
        retry_after = assert_seed_429(refused, AUTHENTICATED)

        # writes refused by the limit never reach the route: no subscriber, no audit entry (a token comes
        # back every 2 s, so of three quick POSTs at most one can get through: it must have done its work)
        posts = {f"ratelimited{i}": admin.post("/api/v1/clients", json={"username": f"ratelimited{i}", "days": 1})
                 for i in range(3)}
        assert {r.status_code for r in posts.values()} <= {201, 429}
        assert sum(r.status_code == 429 for r in posts.values()) >= 2
        with sqlite3.connect(ctl.data_dir / "vpnfleet.db") as db:
            for username, r in posts.items():
                rows = db.execute("select count(*) from clients where username = ?", (username,)).fetchone()[0]
                audited = db.execute("select count(*) from operations where request_id = ?",
                                     (r.headers["x-request-id"],)).fetchone()[0]
                assert (rows, audited) == ((1, 1) if r.status_code == 201 else (0, 0)), (username, r.status_code)

        # the bucket refills at 30 a minute: after Retry-After the key is served again
        time.sleep(retry_after)
        again = admin.get("/api/v1/regions")
        assert again.status_code == 200, again.text
        assert limits(again)[1] == 0


def test_anonymous_callers_are_limited_per_address(fleet: Fleet) -> None:
    ctl = fleet.ctl
    with client(ctl, "127.0.0.4") as first:
        answers, seconds = until_refused(first, "/api/v1/health")
        assert [limits(r)[1] for r in answers[:3]] == [9, 8, 7]
        assert_allowed_count(len(answers) - 1, ANONYMOUS, ANONYMOUS, seconds)
        assert_seed_429(answers[-1], ANONYMOUS)
        # a key is counted as itself, not as the address it comes from
        keyed = first.get("/api/v1/health", headers={"X-API-Key": fleet.keys["spare"]})
        assert keyed.status_code == 200 and limits(keyed)[0] == AUTHENTICATED
    with client(ctl, "127.0.0.5") as second:
        r = second.get("/api/v1/health")
        assert r.status_code == 200 and limits(r)[:2] == (ANONYMOUS, ANONYMOUS - 1)


def test_the_subscription_url_has_its_own_bucket(fleet: Fleet) -> None:
    ctl = fleet.ctl
    with client(ctl, "127.0.0.6") as c:
        answers, seconds = until_refused(c, f"/sub/{uuid.uuid4().hex[:12]}")
        assert all(r.status_code == 404 for r in answers[:-1])
        assert_allowed_count(len(answers) - 1, SUBSCRIPTION, SUBSCRIPTION, seconds)
        assert_seed_429(answers[-1], SUBSCRIPTION)
        health = c.get("/api/v1/health")  # the same address's anonymous bucket is untouched
        assert health.status_code == 200 and limits(health)[:2] == (ANONYMOUS, ANONYMOUS - 1)
    with client(ctl, "127.0.0.7") as c:
        until_refused(c, "/api/v1/health")
        sub = c.get("/sub/anything")  # and the other way round
        assert sub.status_code == 404 and limits(sub)[:2] == (SUBSCRIPTION, SUBSCRIPTION - 1)


def test_a_key_with_its_own_limit_gets_that_limit(fleet: Fleet) -> None:
    ctl = fleet.ctl
    with client(ctl, "127.0.0.8", headers={"X-API-Key": fleet.keys["monitor"]}) as monitor:
        answers, seconds = until_refused(monitor, "/api/v1/regions")
        assert all(r.status_code == 200 and limits(r)[0] == OWN_LIMIT for r in answers[:-1])
        assert_allowed_count(len(answers) - 1, OWN_LIMIT, OWN_LIMIT, seconds)
        assert_seed_429(answers[-1], OWN_LIMIT)
    # burst_limit sizes the bucket; X-RateLimit-Limit stays the per-minute rate
    with client(ctl, "127.0.0.8", headers={"X-API-Key": fleet.keys["bursty"]}) as bursty:
        answers, seconds = until_refused(bursty, "/api/v1/regions")
        assert limits(answers[0])[:2] == (BURSTY_RATE, BURSTY_BURST - 1)
        assert_allowed_count(len(answers) - 1, BURSTY_BURST, BURSTY_RATE, seconds)
        assert_seed_429(answers[-1], BURSTY_RATE, BURSTY_BURST)


def test_an_accounts_sign_ins_share_one_bucket_apart_from_its_keys(fleet: Fleet) -> None:
    """Access tokens of two sessions of one account count together (the account's default limit); the
    account's keys count apart. The tokens are signed with the controller's own key ring, as a login would."""
    ctl = fleet.ctl
    signer = TokenSigner(ctl.data_dir / "jwt", 900, dt.timedelta(days=30))
    signer.load()
    tokens = [signer.issue(fleet.admin_id, str(uuid.uuid4())) for _ in range(2)]
    with client(ctl, "127.0.0.9") as c:
        remaining = []
        for i in range(AUTHENTICATED + 5):
            r = c.get("/api/v1/regions", headers={"Authorization": f"Bearer {tokens[i % 2]}"})
            if r.status_code == 429:
                assert_seed_429(r, AUTHENTICATED)
                break
            assert r.status_code == 200, r.text
            remaining.append(limits(r)[1])
        else:
            raise AssertionError("the account's sessions were never refused")
        # both sessions draw from one bucket (two buckets would allow twice as many)
        assert remaining[:2] == [AUTHENTICATED - 1, AUTHENTICATED - 2]
        assert AUTHENTICATED <= len(remaining) <= AUTHENTICATED + 2
        key = c.get("/api/v1/regions", headers={"X-API-Key": fleet.keys["bursty"]})
        assert key.status_code in (200, 429) and limits(key)[0] == BURSTY_RATE  # the key's own bucket
