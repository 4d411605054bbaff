"""The settings' value types: each bound and format declared once, shared by the file's sections and ``Settings``.

Each is an ``Annotated`` type pydantic checks; a ``Kind`` in its metadata says what it holds in docs/settings.md.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from controller import reality
from controller.settings.addresses import is_unix, split_hostport

#: The proxy cores a node can run (controller.services.desired_state); new nodes get Settings.v2ray_core.
CORES = ("xray", "v2ray")

GiB = 1 << 30
_DAY = 86400.0


# -- value types: the bounds and formats, declared once and shared by the file's sections and Settings -------


class Kind(NamedTuple):
    """What a string setting holds, for the reference (pydantic ignores this metadata)."""

    text: str


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a port or an interval of `true` is a mistake, not a number
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _split(value: Any) -> Any:
    """A list, or one comma-separated string of items (environment variables hold strings)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list (or a comma-separated string)")
    return value


def _cidr(value: Any) -> str:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False).with_prefixlen
    except ValueError:
        raise ValueError(f"{value!r} is not a CIDR") from None


#: What egress.allowed_cidrs may never open: the node itself.
_NODE_ITSELF = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128"))


def _not_node_itself(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        if any(network.version == n.version and network.overlaps(n) for n in _NODE_ITSELF):
            raise ValueError(f"{cidr} would open the node itself (loopback or 0.0.0.0/8)")
    return cidrs


def _server_names(value: Any) -> tuple[str, ...]:
    return tuple(reality.check_server_names(_split(value)))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _listen_addr(value: str) -> str:
    """http_addr: host or host:port (the HTTP server's port may be left to the default)."""
    host, _ = split_hostport(value)
    if not host:
        raise ValueError(f"must be host:port, got {value!r}")
    return value


def _grpc_addr(value: str) -> str:
    """grpc.addr / grpc.enroll_addr: host:port, or unix:/path for a socket behind a local proxy."""
    if is_unix(value):
        return value
    host, port = split_hostport(value)
    if not host or port == 0:
        raise ValueError(f"must be host:port (or unix:/path), got {value!r}")
    return value


def _advertise_addr(value: str) -> str:
    split_hostport(value)  # a bad port is an error now, not when the first agent is told where to dial
    return value


def _http_url(value: str) -> str:
    if value and (not value.startswith(("https://", "http://")) or any(c.isspace() for c in value)):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


def _database_url(value: str) -> str:
    if value:
        from sqlalchemy.engine import make_url  # only when set: parsing is the check
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except (ArgumentError, ValueError):  # never echoed: the URL may hold a password
            raise ValueError("is not a database URL (dialect+driver://user:password@host/db)") from None
    return value


def _local_path(value: str) -> str:
    if any(c in value for c in "\x00\n\r"):
        raise ValueError("a file name may not hold NUL or line breaks")
    return value


def _node_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "\x00\n\r"):
        raise ValueError(f"must be an absolute path on the nodes, got {value!r}")
    return value


def _tls_address(value: str) -> str:
    """v2ray.tls.address: an IP address or a DNS name ("" : the node's own address)."""
    value = value.strip()
    if not value:
        return value
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value
    except ValueError:
        return reality.check_server_name(value)


def _optional_dest(value: str) -> str:
    return reality.check_dest(value) if value else ""


def _optional_names(value: Any) -> tuple[str, ...]:
    return () if value in (None, "", [], ()) else _server_names(value)


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be the binary's SHA-256 (64 hex digits)")
    return value


def _version(value: str) -> str:
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", value):
        raise ValueError("must be x.y.z, e.g. 26.3.27")
    return value


def _region_code(code: str) -> str:
    if code == "local":
        raise ValueError("'local' is reserved for the local provider")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", code):
        raise ValueError(f"region code {code!r} must be lower-case letters, digits and hyphens")
    return code


Port = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65535)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]
Days = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=36500)]
Cidrs = Annotated[tuple[Annotated[str, BeforeValidator(_cidr)], ...], BeforeValidator(_split), Kind("list of CIDRs")]
AllowedCidrs = Annotated[Cidrs, AfterValidator(_not_node_itself)]
ServerNames = Annotated[tuple[str, ...], BeforeValidator(_server_names), Kind("list of host names")]
RealityDest = Annotated[str, AfterValidator(reality.check_dest), Kind("host:port")]
ListenAddr = Annotated[str, AfterValidator(_listen_addr), Kind("host[:port]")]
GrpcAddr = Annotated[str, AfterValidator(_grpc_addr), Kind("host:port or unix:/path")]
AdvertiseAddr = Annotated[str, AfterValidator(_advertise_addr), Kind("host[:port]")]
HttpUrl = Annotated[str, AfterValidator(_http_url), Kind("http(s) URL")]
DatabaseUrl = Annotated[str, AfterValidator(_database_url), Kind("SQLAlchemy URL")]
LocalPath = Annotated[str, AfterValidator(_local_path), Kind("file")]
NodePath = Annotated[str, AfterValidator(_node_path), Kind("absolute path on the nodes")]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
Core = Annotated[Literal[CORES], BeforeValidator(_lower)]  # type: ignore[valid-type]
# the edge's limits (issue 10): positive, and bounded so a typo cannot switch a limit off
BodyBytes = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=GiB)]
JsonDepth = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1000)]
Timeout = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=3600)]
Window = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=_DAY)]
Connections = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1_000_000)]
Failures = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1_000_000)]
CertDays = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=825)]  # 825: the CA/B ceiling clients enforce
NodeQuota = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10_000)]
TokenTtl = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=_DAY)]  # 0: derived (Settings.token_ttl)

# accounts and sessions (issue 12)
TokenLifetime = Annotated[float, BeforeValidator(_not_bool), Field(ge=30, le=_DAY)]
SessionLifetime = Annotated[float, BeforeValidator(_not_bool), Field(ge=60, le=400 * _DAY)]
Attempts = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=1000)]
PasswordLength = Annotated[int, BeforeValidator(_not_bool), Field(ge=8, le=128)]
Argon2Time = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=20)]
Argon2MemoryKib = Annotated[int, BeforeValidator(_not_bool), Field(ge=8 * 1024, le=4 * 1024 * 1024)]
PerMinute = Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10_000_000)]
Roles = Annotated[tuple[Literal["admin", "manager", "viewer", "user"], ...], BeforeValidator(_split),
                  Kind("list of roles")]
SmtpSecurity = Annotated[Literal["starttls", "tls", "none"], BeforeValidator(_lower)]

_FORBID = ConfigDict(extra="forbid")
