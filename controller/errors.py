"""Domain errors and their one mapping to HTTP (seed 001's error codes).

Services raise these; route handlers never build error responses themselves.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An error the API reports to its caller."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(DomainError):
    status, code = 404, "RESOURCE_NOT_FOUND"


class AlreadyExists(DomainError):
    status, code = 409, "RESOURCE_ALREADY_EXISTS"


class Conflict(DomainError):
    """The resource is in a state that does not allow the operation (e.g. starting a deleted node)."""

    status, code = 409, "CONFLICT"


class ValidationFailed(DomainError):
    status, code = 422, "VALIDATION_ERROR"


class BadRequest(DomainError):
    status, code = 400, "BAD_REQUEST"


class Unauthorized(DomainError):
    status, code = 401, "INVALID_CREDENTIALS"


class TokenExpired(Unauthorized):
    """An access token past its expiry: the client refreshes it (POST /api/v1/auth/refresh)."""

    code = "TOKEN_EXPIRED"


class TokenInvalid(Unauthorized):
    """A token that is malformed, tampered with, signed by no key we hold, or revoked (its session ended)."""

    code = "TOKEN_INVALID"


class Forbidden(DomainError):
    """The caller is known but may not do this; ``details.required`` names the permission it lacks."""

    status, code = 403, "INSUFFICIENT_PERMISSIONS"


class PayloadTooLarge(DomainError):
    """The request body is larger than the route takes (limits.max_body_bytes)."""

    status, code = 413, "PAYLOAD_TOO_LARGE"


class TooManyRequests(DomainError):
    """The caller is throttled; ``retry_after`` seconds until it may try again (sent as Retry-After)."""

    status, code = 429, "TOO_MANY_REQUESTS"

    def __init__(self, message: str, retry_after: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class RateLimitExceeded(TooManyRequests):
    """Over a rate limit (seed 001): per key, per account, per anonymous address or per subscription URL."""

    code = "RATE_LIMIT_EXCEEDED"


class Unavailable(DomainError):
    """Something the request needs is not reachable right now (e.g. the node's agent is offline)."""

    status, code = 503, "SERVICE_UNAVAILABLE"


class GatewayTimeout(DomainError):
    status, code = 504, "GATEWAY_TIMEOUT"


def error_body(exc: DomainError, request_id: str) -> dict[str, Any]:
    """The JSON body of an /api/v1 error (DESIGN.md, REST conventions)."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message, "request_id": request_id}
    if exc.details:
        body["details"] = exc.details
    return {"error": body}
