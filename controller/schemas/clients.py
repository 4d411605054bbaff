"""Subscribers (seed 004's /api/v1/clients) and their subscription URL: what the API takes and returns.

The body models are also the commands ``SubscriberService`` receives: a ``SubscriberUpdate`` changes only the
fields it was given (``model_fields_set``). Field bounds and patterns are what the server enforces, so they
are published in /openapi.json. Cross-field rules (days or expires_at, a data limit of at least 1 MiB, node
ids that exist, configured regions) are the service's and come back as 422s naming the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat,
                      StrictInt, WithJsonSchema, field_validator)

from controller.schemas.patching import no_default, refuse_null
from controller.api import MAX_ID, BodyIntId, PageQuery

#: a client's status: "blocked" by an operator, "expired"/"limited" by the schedule
Status = Literal["active", "blocked", "expired", "limited"]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]
#: the longest subscription (days, and how far ahead expires_at may be)
MAX_DAYS = 36500
#: the largest data limit, in GiB (a million GiB: far beyond any plan, well within a 64-bit byte count)
MAX_LIMIT_GB = 1_000_000
#: the smallest data limit but 0 (none): 1 MiB; less would round to (almost) nothing
MIN_LIMIT_GB = 2**-10

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
REGION = r"^[a-z0-9-]{1,64}$"

#: ?format= of /sub/<short_uuid>: the formats and the aliases controller.share_links.pick_format accepts
SubscriptionFormat = Literal["base64", "v2ray", "links", "sing-box", "singbox", "json", "sing-box-tun",
                             "singbox-tun", "clash", "mihomo", "yaml", "clash-legacy", "clash-premium"]

#: expires_at may be at most this far ahead: as far as `days` can reach
_LATEST = dt.timedelta(days=MAX_DAYS)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _expiry(value: dt.datetime | None) -> dt.datetime | None:
    """An expires_at the API can store and show, in UTC: clamped to 1970-01-01 (subscription headers count
    seconds since then; any earlier time means the same: ended) .. MAX_DAYS from now (as far as `days`
    reaches). Clamped rather than refused: every RFC 3339 time the document allows is accepted, and a time
    whose UTC form is outside years 1..9999 lands on the bound it passed."""
    if value is None:
        return None
    latest = _now() + _LATEST
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:  # year 0 or 10000 in UTC
        return _EPOCH if value.year < 1970 else latest
    return min(max(value, _EPOCH), latest)


def _integral(value: Any) -> Any:
    """JSON Schema counts 30.0 as an integer: accept it as 30 (true and "30" stay refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _rfc3339(value: Any) -> Any:
    """A time is a string (or, from Python, a datetime): unix seconds are not one (the document says string)."""
    if not isinstance(value, (str, dt.datetime)):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2027-01-01T00:00:00Z")
    return value


def _data_limit(value: float | None) -> float | None:
    if value is not None and 0 < value < MIN_LIMIT_GB:
        raise ValueError(f"must be 0 (no limit) or at least {MIN_LIMIT_GB} (1 MiB)")
    return value


def _lower(values: list[str] | None) -> list[str] | None:
    """Node ids as the database keeps them (lower case): any spelling of a UUID names the same node."""
    return None if values is None else [v.lower() for v in values]




#: free text: anything but NUL (the edge answers a NUL anywhere in a request with a 400)
NO_NUL = r"^[^\x00]*$"
Note = Annotated[str, Field(max_length=1000, pattern=NO_NUL)]
#: an account id (controller.models.Account): in a body strictly an integer, in a query its digits
OwnerId = BodyIntId
OwnerFilter = Annotated[int, Field(ge=1, le=MAX_ID)]
Username = Annotated[str, Field(pattern=USERNAME, description="3-64 characters: letters, digits, _ . @ -; "
                                                              "unique regardless of case")]
Days = Annotated[StrictInt, Field(ge=1, le=MAX_DAYS), BeforeValidator(_integral)]
#: a time with its offset (RFC 3339), never unix seconds
ExpiresAt = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_expiry)]
#: GiB: 0 (no limit) or 1 MiB .. MAX_LIMIT_GB; published exactly as enforced
DataLimitGb = Annotated[StrictFloat, Field(ge=0, le=MAX_LIMIT_GB, allow_inf_nan=False), AfterValidator(_data_limit), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": MIN_LIMIT_GB, "maximum": MAX_LIMIT_GB}, {"type": "number", "const": 0}],
    "description": "GiB: 0 for no limit, else at least 1 MiB (0.0009765625)"})]
NodeIds = list[Annotated[str, Field(pattern=UUID, description="a node id (UUID)")]]
Regions = list[Annotated[str, Field(pattern=REGION, description="a region code")]]


class SubscriberBody(BaseModel):
    """A new subscriber: give `days` or `expires_at` (one of them, not null)."""

    # exactly one of days and expires_at, as the service enforces (a 422 naming days)
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["days"]}, {"required": ["expires_at"]}],
        "not": {"required": ["days", "expires_at"]}})
    username: Username
    # left out: None (typed without None, so a null is refused; see SubscriberUpdate)
    days: Days = Field(default=None, description="subscription length from now", json_schema_extra=no_default)
    expires_at: ExpiresAt = Field(
        default=None, json_schema_extra=no_default,
        description="instead of days: when access ends (with an offset); in the past: the client is created "
                    "expired; before 1970 or more than 36500 days ahead: that bound")
    data_limit_gb: DataLimitGb | None = Field(default=None, description="GiB; null or 0: no limit")
    node_ids: NodeIds | None = Field(default=None, max_length=1000, description="default: every node")
    regions: Regions | None = Field(default=None, max_length=100, description="default: every region")
    note: Note = ""
    owner_id: OwnerId | None = Field(default=None, description="the account that owns the client (a user "
                                                               "account sees only what it owns); null: none")

    _nodes = field_validator("node_ids")(lambda cls, v: _lower(v))
    _not_null = field_validator("days", "expires_at", mode="before")(lambda cls, v: refuse_null(v))


class SubscriberUpdate(BaseModel):
    """Only the fields given change. A new plan: days (from now) or expires_at, data_limit_gb. username, days
    and expires_at may be left out but not set to null; null node_ids/regions mean every node/region."""

    # not both days and expires_at, as the service enforces (a 422 naming days)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {"required": ["days", "expires_at"]}})
    # Typed without None (a null is refused) but defaulting to None, which pydantic does not validate: a field
    # left out reads None and is not in model_fields_set.
    username: Username = Field(default=None, json_schema_extra=no_default)
    days: Days = Field(default=None, description="a new plan: from now", json_schema_extra=no_default)
    expires_at: ExpiresAt = Field(
        default=None, json_schema_extra=no_default,
        description="may be in the past: expires the client now; before 1970 or more than 36500 days ahead: "
                    "that bound")
    data_limit_gb: DataLimitGb | None = Field(default=None, description="GiB; null or 0: no limit")
    node_ids: NodeIds | None = Field(default=None, max_length=1000)
    regions: Regions | None = Field(default=None, max_length=100)
    note: Note | None = Field(default=None, description="null: empty")
    owner_id: OwnerId | None = Field(default=None, description="null: no owner")

    _not_null = field_validator("username", "days", "expires_at", mode="before")(lambda cls, v: refuse_null(v))
    _nodes = field_validator("node_ids")(lambda cls, v: _lower(v))


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: Days = Field(description="added to the end of the subscription (or to now, if it has ended)")


class ClientQuery(PageQuery):
    status: Status | None = None
    expired: bool | None = Field(default=None, description="expires_at has passed (or not)")
    search: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL,
                               description="a substring of the username or note (any case), or the id")
    owner_id: OwnerFilter | None = Field(default=None, description="only the clients this account owns")


class UsageQuery(BaseModel):
    days: int = Field(default=30, ge=1, le=366, description="how many days back, today included")


class SubscriptionQuery(BaseModel):
    format: SubscriptionFormat | None = Field(
        default=None,
        description="overrides the User-Agent. Default from the User-Agent: mihomo-based Clash apps: clash, "
                    "other Clash apps: clash-legacy (VMess only), the sing-box apps SFA/SFI/SFM: sing-box-tun "
                    "(a tun inbound capturing the device's traffic), the sing-box CLI and Hiddify: sing-box (a "
                    "local mixed inbound), else base64 (share links for v2rayN, v2rayNG, Shadowrocket, ...). "
                    "Aliases: v2ray, links = base64; singbox, json = sing-box; singbox-tun = sing-box-tun; "
                    "mihomo, yaml = clash; clash-premium = clash-legacy")
    lang: Literal["en", "zh", "ru"] | None = Field(
        default=None, description="the language of the page a browser gets (default: its Accept-Language)")


# -- responses -----------------------------------------------------------------------------------------------

class SubscriberOut(BaseModel):
    """Seed 004's client fields, plus plan, usage and where the client may connect."""

    id: str
    username: str
    short_uuid: str = Field(description="the secret of the subscription URL")
    subscription_url: str
    status: Status
    expires_at: str = Field(description="ISO 8601, UTC")
    expired: bool
    data_limit_bytes: int | None = Field(description="null: no limit")
    data_limit_gb: float | None
    used_upload_bytes: int = Field(description="since the last usage reset")
    used_download_bytes: int
    used_bytes: int
    usage_reset_at: str | None
    node_ids: list[str] | None = Field(description="null: every node")
    regions: list[str] | None = Field(description="null: every region")
    shared_credential: bool = Field(description="the legacy id shared by every node still works (until rotation "
                                                "or the fleet cut-over)")
    note: str
    owner_id: int | None = Field(description="the account that owns the client; null: none")
    created_at: str
    updated_at: str


class SubscriberConfig(BaseModel):
    """Seed 004's config: `config_data` is the base64 subscription of share links."""

    client_id: str
    short_uuid: str
    subscription_url: str
    config_data: str = Field(description="base64 list of share links; empty while no running node serves the "
                                         "client")


class FormatUrl(BaseModel):
    name: str = Field(description="what the apps call the format: base64, sing-box, clash")
    url: str = Field(description="the subscription URL in that format (what its QR code carries)")


class ImportLink(BaseModel):
    app: str = Field(description="the app (or apps) the link opens: v2rayNG, sing-box, Clash / mihomo, ...")
    url: str = Field(description="a one-tap import link: the app's URL scheme carrying the subscription URL")


class SubscriberImport(BaseModel):
    """What the subscriber's page (/sub/<short_uuid>) offers for importing: one URL per format and a one-tap
    link per app, built by controller.subscription_page (so the panel shows the same links as the page)."""

    client_id: str
    subscription_url: str
    available: bool = Field(description="a running node serves the subscription now")
    formats: list[FormatUrl]
    import_links: list[ImportLink]


class DayUsage(BaseModel):
    date: str = Field(description="YYYY-MM-DD, UTC")
    upload_bytes: int
    download_bytes: int
    total_bytes: int


class NodeUsage(BaseModel):
    node_id: str
    node_name: str | None = Field(description="null once the node is gone")
    days: list[DayUsage]
    upload_bytes: int
    download_bytes: int


class Transfer(BaseModel):
    upload_bytes: int
    download_bytes: int


class UsedSinceReset(BaseModel):
    upload_bytes: int
    download_bytes: int
    total_bytes: int
    data_limit_bytes: int | None
    since: str | None = Field(description="the last usage reset; null: never reset")


class SubscriberUsage(BaseModel):
    client_id: str
    since: str = Field(description="the first day counted (YYYY-MM-DD, UTC)")
    nodes: list[NodeUsage]
    period: Transfer = Field(description="the sum over nodes and days")
    used: UsedSinceReset = Field(description="what counts against the data limit")


class CutOverResult(BaseModel):
    subscribers: int = Field(description="how many were cut over")
