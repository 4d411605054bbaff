"""Authentication: an API key or access token on every path but the public ones, failed guesses throttled per
source address, and rate limits per caller."""

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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.auth import Directory, Principal
from controller.edge.errors import error_response, loggable_path
from controller.edge.rate_limit import Decision, RateLimiter
from controller.edge.request_id import request_id
from controller.errors import DomainError, Forbidden, TokenExpired, TokenInvalid, TooManyRequests, Unauthorized
from controller.services.operations import OperationLog
from controller.tokens import ACCESS, SETUP, looks_like_jwt

log = logging.getLogger("vpnfleet.auth")

#: paths anyone may call (DESIGN.md): health, the API description, token-authenticated downloads, and signing in
PUBLIC_PATHS = ("/api/v1/health", "/openapi.json", "/api/v1/auth/login", "/api/v1/auth/refresh",
                "/api/v1/auth/verify-2fa", "/api/v1/auth/register", "/api/v1/auth/verify",
                "/api/v1/auth/reset-password", "/api/v1/auth/reset-password/request", "/ui")
PUBLIC_PREFIXES = ("/docs", "/sub/", "/agent/package/", "/ui/")
#: public paths whose Authorization: Bearer is the route's own token (an mfa challenge, a refresh token), not an
#: API credential: the edge neither resolves nor counts it (else each use would count as a failed guess)
OWN_TOKEN_PATHS = ("/api/v1/auth/verify-2fa", "/api/v1/auth/refresh")
#: all a sign-in may reach while its account must set a new password first (an admin reset it with force_change)
PASSWORD_CHANGE_PATHS = ("/api/v1/auth/password", "/api/v1/auth/me", "/api/v1/auth/logout")
#: where an account that must enrol 2FA first (auth.require_two_factor_roles) may use its setup token
TWO_FACTOR_SETUP_PATHS = ("/api/v1/auth/2fa/setup", "/api/v1/auth/2fa/enable")
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
    """Requires an API key or an access token (X-API-Key, or Authorization: Bearer) everywhere but the public
    paths, resolves it to the request's principal (``scope["state"]["principal"]``), and applies rate limits.

    A wrong key or a tampered token is a 401 and is logged (source, path, fingerprint; never the credential);
    ``failures_per_window`` of them from one source within ``failure_window`` seconds get it 429s with
    Retry-After for the window. A request with no credential at all is a 401 that does not count: it guesses
    nothing. An expired token is a 401 TOKEN_EXPIRED that does not count either (it was valid).

    Rate limits: a key's own, else ``authenticated_per_minute`` per key or per account (all its sessions
    together); ``anonymous_per_minute`` per source address for everything else, and ``subscription_per_minute``
    per source address on /sub/. Every answer carries the X-RateLimit-* headers of the bucket it counted in.
    """

    def __init__(self, app: ASGIApp, directory: Directory, limiter: RateLimiter | None = None,
                 failures_per_window: int = 20, failure_window: float = 60.0, max_tracked: int = MAX_TRACKED,
                 authenticated_per_minute: int = 1000, anonymous_per_minute: int = 100,
                 subscription_per_minute: int = 60, operations: OperationLog | None = None) -> None:
        self.app = app
        #: where refusals of real keys are recorded (the audit middleware sees only admitted requests)
        self.operations = operations
        self.directory = directory
        self.limiter = limiter or RateLimiter()
        self.throttle = FailureThrottle(failures_per_window, failure_window, max_tracked)
        self.fingerprint = KeyFingerprint()
        self.authenticated_per_minute = authenticated_per_minute
        self.anonymous_per_minute = anonymous_per_minute
        self.subscription_per_minute = subscription_per_minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        source = source_of(scope)
        wait = self.throttle.retry_after(source)
        presented = presented_key(scope)
        principal: Principal | None = None
        refusal: DomainError | None = None
        if is_public(path):
            # anyone may call these; a credential, when given, is checked (and bad keys counted) here too, so a
            # public route that says more to a key holder (/api/v1/health) is no unthrottled key oracle
            if presented and wait is None and path not in OWN_TOKEN_PATHS:
                try:
                    principal = self._authenticate(scope, presented, source)
                except DomainError:
                    principal = None  # e.g. /api/v1/auth/verify-2fa's challenge token: the route checks it
        elif wait is not None:
            refusal = TooManyRequests(f"too many failed credentials from this address; retry in {wait} s", wait,
                                      {"retry_after": wait})
        elif not presented:
            refusal = Unauthorized("API key or access token required (X-API-Key or Authorization: Bearer)")
        else:
            try:
                principal = self._authenticate(scope, presented, source)
            except DomainError as exc:
                refusal = exc
        decision = self._rate(principal, path, source)
        if refusal is None and not decision.allowed:
            refusal = decision.error()
        if refusal is not None:
            refused_key = scope.get("state", {}).get("refused_key")
            if refused_key is not None and self.operations is not None:
                actor, why = refused_key
                try:  # as many as the anonymous rate limit lets through: the caller is refused as no one
                    await self.operations.record(
                        actor=actor, action=f"{scope['method']} {loggable_path(path)}", target_type="api-key",
                        target_id=None, payload=None, status_code=refusal.status, error=why,
                        request_id=request_id(scope))
                except Exception:  # the audit log must never turn a refusal into a failure
                    log.exception("could not write the operations log")
            return await error_response(refusal, scope)(scope, receive, _with_headers(send, decision))
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, _with_headers(send, decision))

    def _authenticate(self, scope: Scope, presented: str, source: str) -> Principal:
        """The principal of the credential, or a DomainError (a guess is counted against its source)."""
        path = scope["path"]
        if looks_like_jwt(presented):
            try:
                types = (ACCESS, SETUP) if path in TWO_FACTOR_SETUP_PATHS else (ACCESS,)
                principal = self.directory.token_principal(presented, types)
                if principal.must_change_password and path not in PASSWORD_CHANGE_PATHS and not is_public(path):
                    raise Forbidden("this account must set a new password first: PUT /api/v1/auth/password",
                                    {"required": "password change"})
                return principal
            except TokenExpired:
                raise
            except TokenInvalid:
                self._failed(scope, presented, source, "invalid access token")
                raise
        entry = self.directory.authenticate_key(presented)
        if entry is None:
            self._failed(scope, presented, source, "invalid API key")
            raise Unauthorized("invalid API key")
        client = scope.get("client")
        try:
            return self.directory.key_principal(entry, client[0] if client else None, path)
        except DomainError as exc:
            # a real key used where it may not be (another address or path, expired, its account suspended):
            # worth an operator's attention, and it is no guess; it goes to the operations log below
            account = self.directory.account(entry.account_id)
            scope.setdefault("state", {})["refused_key"] = (
                f"{account.username if account else '?'} (key {entry.name})", exc.message)
            log.warning("API key %s of account %s refused on %s %s from %s: %s", entry.name,
                        account.username if account else "?", scope["method"], loggable_path(path), source,
                        exc.message)
            raise

    def _failed(self, scope: Scope, presented: str, source: str, what: str) -> None:
        locked = self.throttle.failed(source)
        log.warning("%s from %s on %s %s (fingerprint %s)%s", what, source, scope["method"],
                    loggable_path(scope["path"]), self.fingerprint(presented),
                    f"; address locked out for {self.throttle.window:g} s" if locked else "")

    def _rate(self, principal: Principal | None, path: str, source: str) -> Decision:
        if principal is not None:
            per_minute, burst = principal.rate_limit or (self.authenticated_per_minute, None)
            return self.limiter.hit(principal.rate_key, per_minute, burst)
        if path.startswith("/sub/"):
            return self.limiter.hit(f"sub:{source}", self.subscription_per_minute)
        return self.limiter.hit(f"anon:{source}", self.anonymous_per_minute)


def _with_headers(send: Send, decision: Decision) -> Send:
    """``send`` adding the rate-limit headers to the response's start."""
    extra = decision.headers()

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    return sending


def is_public(path: str) -> bool:
    """Anyone may call ``path`` (the routes there declare ``public()``; controller.access checks the two agree)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def presented_key(scope: Scope) -> str:
    """The API key a request carries (X-API-Key, else Authorization: Bearer), or ""."""
    headers = dict(scope["headers"])
    presented = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if not presented:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
    return presented
