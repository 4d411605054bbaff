"""Nodes: request bodies, queries and the JSON of a node, its metrics, info, tcping, logs and event stream."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema,
                      field_validator)
from pydantic.json_schema import SkipJsonSchema

from controller.schemas.patching import no_default
from controller.api import PageQuery

NodeStatus = Literal["pending", "creating", "running", "stopping", "stopped", "starting", "deleting", "deleted",
                     "error"]
Core = Literal["xray", "v2ray"]
NodeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]

# -- times in queries ------------------------------------------------------------------------------------------

#: the times a query names are clamped to these (no data lies outside them): year 1 used to overflow the
#: one-hour default window into a 500; any valid RFC 3339 time is now an answer
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
UNIX_SECONDS = r"^[0-9]{1,12}(\.[0-9]{1,9})?$"
_UNIX = re.compile(UNIX_SECONDS)


def _parse_time(raw: Any) -> Any:
    """ISO 8601 / RFC 3339 (Z or an offset; no offset: UTC) or unix seconds, clamped to 1970..9999."""
    if not isinstance(raw, str):
        return raw
    if _UNIX.fullmatch(raw):
        seconds = min(float(raw), LATEST.timestamp())
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    try:
        value = dt.datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 time or unix seconds") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:  # an offset moved it out of the calendar (year 1 or 9999)
        return EARLIEST if value.year < 5000 else LATEST
    return min(max(value, EARLIEST), LATEST)


ApiTime = Annotated[dt.datetime, BeforeValidator(_parse_time), WithJsonSchema({
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": UNIX_SECONDS}],
    "description": "RFC 3339 time (UTC unless an offset is given) or unix seconds; clamped to 1970..9999"})]


def _json_int(value: Any) -> Any:
    """An integer as JSON has them: 5 or 5.0 (JSON Schema's integer), never "5" or true."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


#: an integer in a JSON body (see _json_int)
JsonInt = Annotated[int, BeforeValidator(_json_int)]


# -- bodies ----------------------------------------------------------------------------------------------------

_KEY_REFUSED = ("the node's REALITY key pair is made by the controller and never taken from outside "
                "(the public key shows in the node's JSON)")
_INBOUNDS_REFUSED = ("the inbounds follow the node's core (set core: xray or v2ray); VLESS is never served "
                     "without TLS or REALITY")


def _refuse(message: str):  # noqa: ANN202
    def check(value: Any) -> Any:
        raise ValueError(message)
    return check


class RealityInput(BaseModel):
    """A node's own REALITY settings (xray nodes). Omitted fields are kept; a null dest or server_names goes
    back to the region's (aws.regions.<code>.reality_*) or the fleet's (v2ray.reality.*)."""

    model_config = ConfigDict(extra="forbid")
    dest: str | None = Field(default=None, max_length=300, description="the target site, host:port, e.g. "
                             "www.microsoft.com:443; it must serve the server names")
    server_names: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=16, description="the TLS server names clients may send (the first is the one "
                                                 "subscriptions carry)")
    short_ids: list[Annotated[str, Field(max_length=16)]] | None = Field(
        default=None, min_length=1, max_length=8, description="hex, an even number of characters up to 16; the "
                                                               "first is the one subscriptions carry")
    # Never accepted (a clear 422 naming the field); not part of the schema.
    private_key: SkipJsonSchema[Any] = None
    public_key: SkipJsonSchema[Any] = None
    _no_private_key = field_validator("private_key")(_refuse(_KEY_REFUSED))
    _no_public_key = field_validator("public_key")(_refuse(_KEY_REFUSED))

    def changes(self) -> dict[str, Any]:
        """The fields the request set ({dest, server_names, short_ids}; a None value: back to the default)."""
        return self.model_dump(include=self.model_fields_set - {"private_key", "public_key"})


class NodeCreate(BaseModel):
    """POST /api/v1/nodes (and, region only, seed 000's POST /api/v2ray/instances)."""

    model_config = ConfigDict(extra="forbid")
    region: str = Field(min_length=1, max_length=64)
    name: NodeName | None = None
    core: Core | None = Field(default=None, description="the proxy core; default v2ray.core (xray)")
    reality: RealityInput | None = None
    v2ray_inbounds: SkipJsonSchema[Any] = None
    _no_inbounds = field_validator("v2ray_inbounds")(_refuse(_INBOUNDS_REFUSED))



class NodeAgentSettings(BaseModel):
    """A node's own agent settings (merged over the fleet's)."""

    model_config = ConfigDict(extra="forbid")
    # Not nullable (a null is a 422, not "unset"): omitted means unchanged.
    metrics_interval_seconds: JsonInt = Field(default=None, ge=1, le=3600,  # type: ignore[assignment]
                                              json_schema_extra=no_default)
    log_level: Literal["debug", "info", "warning", "error"] = Field(  # type: ignore[assignment]
        default=None, json_schema_extra=no_default)


class NodeUpdate(BaseModel):
    """PATCH /api/v1/nodes/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid")
    name: NodeName | None = None
    agent_settings: NodeAgentSettings | None = None
    core: Core | None = Field(default=None, description="switch the proxy core (one restart of the node's core)")
    reality: RealityInput | None = None
    v2ray_inbounds: SkipJsonSchema[Any] = None
    _no_inbounds = field_validator("v2ray_inbounds")(_refuse(_INBOUNDS_REFUSED))


# -- queries ---------------------------------------------------------------------------------------------------

class NodeQuery(PageQuery):
    status: NodeStatus | None = None
    region: str | None = Field(default=None, min_length=1, max_length=64)
    online: bool | None = None
    search: str | None = Field(default=None, min_length=1, max_length=200,
                               description="name, id, IP or instance id contains")
    include_deleted: bool = False


class MetricsQuery(BaseModel):
    start_time: ApiTime | None = Field(default=None, description="default: an hour before end_time")
    end_time: ApiTime | None = Field(default=None, description="default: now")
    interval: int = Field(default=60, ge=60, le=86400 * 31, multiple_of=60, description="seconds per point")


#: host:port or [IPv6]:port, port 1..65535 (ASCII digits only)
TCPING_TARGET = (r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):"
                 r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$")


class TcpingQuery(BaseModel):
    target: str = Field(max_length=300, pattern=TCPING_TARGET, description="host:port or [ipv6]:port")

    @field_validator("target")
    @classmethod
    def _bracketed_is_ipv6(cls, value: str) -> str:
        """What the pattern cannot say: inside brackets an IPv6 address (the node would refuse it later)."""
        if value.startswith("["):
            try:
                ipaddress.IPv6Address(value[1:value.index("]")])
            except ValueError:
                raise ValueError("the address in brackets must be an IPv6 address") from None
        return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LogsQuery(BaseModel):
    level: Annotated[LogLevel, BeforeValidator(_lower)] = Field(default="debug", description="minimum level")
    search: str | None = Field(default=None, min_length=1, max_length=200, description="case-insensitive substring")
    since: ApiTime | None = None
    limit: int = Field(default=200, ge=1, le=5000)
    follow: bool = Field(default=False, description="stream new lines as Server-Sent Events")


class EventsQuery(BaseModel):
    node_id: str | None = Field(default=None, min_length=1, max_length=64, description="only this node's events")
    logs: bool = Field(default=False, description="include log events")
    metrics: bool = Field(default=False, description="include `metrics` events: each node's newest sample (CPU, "
                                                     "memory, traffic per second) as it arrives, and at the start "
                                                     "the newest sample of every node")


# -- responses -------------------------------------------------------------------------------------------------

class ComponentStatus(BaseModel):
    name: str
    state: str
    error: str | None
    config_hash: str


class NodeAgent(BaseModel):
    connectivity: Literal["online", "offline"]
    online: bool
    last_seen_at: str | None
    enrolled: bool
    enrolled_at: str | None
    version: str | None
    hostname: str | None
    capabilities: list[str]
    desired_revision: int
    applied_revision: int
    in_sync: bool
    components: list[ComponentStatus]
    settings: dict[str, Any]
    telemetry_dropped: int
    telemetry_rejected: int = Field(description="entries the controller refused (usage for subscribers/peers "
                                                "not on the node, impossible values)")


class NodeInbound(BaseModel):
    tag: str
    protocol: str
    port: int
    listen: str
    profile: str


class NodeReality(BaseModel):
    """Public REALITY values (never the private key); dest/server_names null: the region's or fleet's."""

    public_key: str
    short_ids: list[str]
    dest: str | None
    server_names: list[str] | None


class NodeOut(BaseModel):
    id: str = Field(description="the node's UUID")
    seq: int
    name: str
    region: str
    region_name: str
    provider: str
    instance_id: str | None
    public_ip: str | None
    private_ip: str | None
    status: NodeStatus
    status_reason: str | None
    status_changed_at: str | None
    created_at: str | None
    updated_at: str | None
    deleted_at: str | None
    agent: NodeAgent
    core: Core
    v2ray_inbounds: list[NodeInbound] | None = Field(description="where subscribers connect (null for nodes "
                                                                 "created before V2Ray)")
    reality: NodeReality
    ws_path: str | None


class MetricMemory(BaseModel):
    total: int
    used: int
    usage_percent: float


class MetricSwap(BaseModel):
    total: int
    used: int


class MetricNetwork(BaseModel):
    rx_bytes: int
    tx_bytes: int


class MetricSample(BaseModel):
    time: str
    cpu_percent: float
    memory: MetricMemory
    swap: MetricSwap
    disk: MetricMemory
    network: MetricNetwork
    load_average: list[float]
    uptime_seconds: int


class MetricPoint(BaseModel):
    time: str
    samples: int
    cpu_avg: float
    cpu_max: float
    mem_used_avg: int
    mem_total: int
    disk_used: int
    disk_total: int
    net_rx_bytes: int
    net_tx_bytes: int
    net_rx_bps: float
    net_tx_bps: float
    load1_avg: float


class NodeMetrics(BaseModel):
    node_id: str
    current: MetricSample | None = Field(description="the latest sample since the controller started")
    start_time: str
    end_time: str
    interval: int
    history: list[MetricPoint]


class NodeInfo(BaseModel):
    """The fields of NodePass's /info, measured on the node."""

    alias: str
    os: str
    arch: str
    cpu: int
    mem_total: int
    mem_used: int
    swap_total: int
    swap_used: int
    netrx: int
    nettx: int
    diskr: int
    diskw: int
    sysup: int
    ver: str
    name: str
    uptime: int
    log: str
    tls: str
    crt: str
    key: str


class TcpingResult(BaseModel):
    target: str
    connected: bool
    latency: int = Field(description="milliseconds")
    error: str | None


class LogLine(BaseModel):
    node_id: str
    time: str
    level: str
    source: str
    message: str


class NodeLogs(BaseModel):
    node_id: str
    lines: list[LogLine]
    dropped_by_agent: int


#: the 429 of a node creation (documented with its Retry-After header)
CREATION_THROTTLED = {
    "description": "too many nodes created in the region this minute (nodes.creations_per_minute), or too many "
                   "failed authentications from this address; Retry-After says when to try again",
    "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer", "minimum": 1}}},
}

#: the documented body of an SSE stream (each event: `event: <name>`, `data: <JSON>`)
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string", "description": "Server-Sent Events"}}}
