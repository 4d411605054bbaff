"""Scoped API keys (seed 001's /api/v1/auth/api-keys): what the API takes and returns.

Shapes are checked here (CIDRs parse, endpoint globs start with "/", expires_at is in the future); whether the
key stays within its account and its creator is the service's (403 naming the permission).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from controller.api import MAX_ID, BodyIntId, PageQuery
from controller.schemas.clients import NO_NUL

AccessLevel = Literal["read", "write", "full"]
KeyStatus = Literal["active", "revoked", "expired"]
#: the most requests a key may be allowed per minute (a bound, not a recommendation)
MAX_PER_MINUTE = 1_000_000


def _cidr(value: str) -> str:
    """A network as the key stores it: normalised ("10.1.2.3/8" is 10.0.0.0/8; a bare address is its /32 or
    /128)."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP network (e.g. 10.0.0.0/8 or 2001:db8::/32)") from None


def _future(value: dt.datetime) -> dt.datetime:
    value = value.astimezone(dt.timezone.utc)
    if value <= dt.datetime.now(dt.timezone.utc):
        raise ValueError("must be in the future")
    return value


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                            description="unique among all keys")]
Cidr = Annotated[str, Field(max_length=64), AfterValidator(_cidr)]
#: "/api/v1/wireguard/*" covers the path and everything below it; "*" matches any characters, "/" included
EndpointGlob = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^/[\x21-\x7e]*$",
                                    description='a path glob starting with "/", e.g. /api/v1/wireguard/*')]
Future = Annotated[AwareDatetime, AfterValidator(_future)]


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests_per_minute: int = Field(ge=1, le=MAX_PER_MINUTE, strict=True)
    burst_limit: int | None = Field(default=None, ge=1, le=MAX_PER_MINUTE, strict=True,
                                    description="requests at once before the per-minute rate applies (default: "
                                                "requests_per_minute)")


class ApiKeyBody(BaseModel):
    """A new key (seed 001). It may do at most what its account may, and at most what the caller may."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    access_level: AccessLevel = Field(default="read", description="read: view permissions only; write and "
                                                                  "full: its permissions")
    permissions: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100,
        description="null: the account's (or, made with a key, that key's); else a subset of them")
    allowed_ips: list[Cidr] | None = Field(default=None, max_length=100, description="null: any address")
    allowed_endpoints: list[EndpointGlob] | None = Field(default=None, max_length=100, description="null: any path")
    rate_limit: RateLimit | None = Field(default=None, description="null: the account's limit")
    expires_at: Future | None = Field(default=None, description="null: never")
    description: str = Field(default="", max_length=1000, pattern=NO_NUL)
    account_id: BodyIntId | None = Field(default=None, description="another account's key (needs "
                                                                   "keys.manage_all); null: the caller's")


class ApiKeyQuery(PageQuery):
    account_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="only this account's keys (others' need keys.manage_all)")
    status: KeyStatus | None = None


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters (the key itself is shown once)")
    account_id: int | None
    username: str | None = Field(description="the account the key acts as")
    access_level: AccessLevel
    permissions: list[str] | None = Field(description="as given; null: its account's")
    effective_permissions: list[str] = Field(description='what the key may do now ("*": everything)')
    allowed_ips: list[str] | None
    allowed_endpoints: list[str] | None
    rate_limit: RateLimit | None
    expires_at: str | None
    description: str
    status: KeyStatus
    created_at: str
    last_used: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="the key: shown this once, stored only hashed")
