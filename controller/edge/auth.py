"""Authentication: an API key on every path but the public ones, with failed keys throttled per source address."""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from typing import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from controller.auth import ApiKeyStore
from controller.edge.errors import error_response, loggable_path
from controller.errors import TooManyRequests, Unauthorized

log = logging.getLogger("vpnfleet.auth")

#: paths anyone may call (DESIGN.md): health, the API description, and token-authenticated downloads
PUBLIC_PATHS = ("/api/v1/health", "/openapi.json")
PUBLIC_PREFIXES = ("/docs", "/sub/", "/agent/package/")
#: addresses tracked at once; beyond it the least recently failing one is forgotten (memory stays bounded)
MAX_TRACKED = 10_000


def source_of(scope: Scope) -> str:
    """The caller's address as throttled: an IPv6 caller by its /64 (one host usually holds the whole /64, so
    counting single addresses would let it rotate through 2^64 of them). Behind a reverse proxy this is the
    proxy, unless uvicorn's --proxy-headers/--forwarded-allow-ips put the client's address in the scope."""
    client = scope.get("client")
    if not client:
        return "unknown"
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])  # a unix socket peer or a test transport
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 caller a.b.c.d
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class FailureThrottle:
    """Counts failed authentications per source: ``limit`` failures within ``window`` seconds lock that source
    out for ``window`` seconds (its requests are refused before their key is looked at, so a locked-out
    guesser learns nothing). Successes neither count nor reset anything. At most ``max_tracked`` sources."""

    def __init__(self, limit: int, window: float, max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, limit)
        self.window = window
        self.max_tracked = max_tracked
        self.clock = clock
        #: source -> the times of its recent failures (at most ``limit``), least recently failing first
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._locked: collections.OrderedDict[str, float] = collections.OrderedDict()  # source -> until

    def retry_after(self, source: str) -> int | None:
        """Whole seconds until ``source`` may try again, or None when it is not locked out."""
        until = self._locked.get(source)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._locked[source]
            return None
        return max(1, math.ceil(left))

    def failed(self, source: str) -> bool:
        """Count one failure; True when it locked the source out."""
        now = self.clock()
        times = self._failures.pop(source, None) or collections.deque(maxlen=self.limit)
        times.append(now)
        if len(times) == self.limit and now - times[0] <= self.window:
            self._locked[source] = now + self.window
            self._locked.move_to_end(source)
            _trim(self._locked, self.max_tracked)
            return True
        self._failures[source] = times  # re-inserted last: the dict's order is the eviction order
        _trim(self._failures, self.max_tracked)
        return False

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked)


def _trim(entries: collections.OrderedDict, size: int) -> None:  # type: ignore[type-arg]
    while len(entries) > size:
        entries.popitem(last=False)


class KeyFingerprint:
    """A short tag telling repeated bad keys apart in the log: HMAC with a key that never leaves this process,
    so even a weak secret pasted by mistake cannot be guessed back from the log, and tags mean nothing across
    restarts."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def __call__(self, presented: str) -> str:
        return hmac.new(self._key, presented.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:8]


class AuthMiddleware:
    """Requires an API key (X-API-Key or Authorization: Bearer) everywhere but PUBLIC_PATHS.

    A wrong key is a 401 and is logged (source, path, fingerprint; never the key); ``failures_per_window``
    wrong keys from one source within ``failure_window`` seconds get it 429s with Retry-After for the window.
    A request with no key at all is a 401 that does not count: it guesses nothing.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeyStore, failures_per_window: int = 20,
                 failure_window: float = 60.0, max_tracked: int = MAX_TRACKED) -> None:
        self.app = app
        self.keys = keys
        self.throttle = FailureThrottle(failures_per_window, failure_window, max_tracked)
        self.fingerprint = KeyFingerprint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        source = source_of(scope)
        wait = self.throttle.retry_after(source)
        presented = presented_key(scope)
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            # anyone may call these; a key, when given, is checked (and its failures counted) here too, so a
            # public route that says more to a key holder (/api/v1/health) is no unthrottled key oracle
            if presented and wait is None:
                self._authenticate(scope, presented, source)
            return await self.app(scope, receive, send)
        if wait is not None:
            return await error_response(TooManyRequests(
                f"too many failed API keys from this address; retry in {wait} s", wait, {"retry_after": wait}),
                scope)(scope, receive, send)
        if not presented:
            return await error_response(Unauthorized("API key required (X-API-Key or Authorization: Bearer)"),
                                        scope)(scope, receive, send)
        if not self._authenticate(scope, presented, source):
            return await error_response(Unauthorized("invalid API key"), scope)(scope, receive, send)
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope, presented: str, source: str) -> bool:
        """Set the request's principal from the key, or count (and log) a failure of its source."""
        principal = self.keys.authenticate(presented)  # constant-time over every key (controller.auth)
        if principal is None:
            locked = self.throttle.failed(source)
            log.warning("invalid API key from %s on %s %s (key fingerprint %s)%s", source, scope["method"],
                        loggable_path(scope["path"]), self.fingerprint(presented),
                        f"; address locked out for {self.throttle.window:g} s" if locked else "")
            return False
        scope.setdefault("state", {})["principal"] = principal
        return True


def presented_key(scope: Scope) -> str:
    """The API key a request carries (X-API-Key, else Authorization: Bearer), or ""."""
    headers = dict(scope["headers"])
    presented = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if not presented:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
    return presented
