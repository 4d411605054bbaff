"""Subscribers (seed 004's /api/v1/clients): create, plan changes, block, rotate, config, usage."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.errors import ValidationFailed
from controller.http import json, page_params, paginated, path_uuid, query_bool, query_int, read_body
from controller.models import Subscriber, utcnow
from controller.serializers import iso
from controller.services.subscribers import GIB, MAX_DAYS, STATUSES, SubscriberService, endpoint_credentials
from controller.share_links import render_base64

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
REGION = r"^[a-z0-9-]{1,64}$"
NOT_FOUND = "client not found: "


#: expires_at may be at most this far ahead: as far as `days` can reach
_LATEST = dt.timedelta(days=MAX_DAYS)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _expiry(value: dt.datetime | None, future: bool) -> dt.datetime | None:
    """An expires_at the API can store and show: in UTC, after 1970 (subscription headers count seconds since
    then), no later than MAX_DAYS from now, and in the future when a client is created."""
    if value is None:
        return None
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("is out of range") from None
    now = utcnow()
    if future and value <= now:
        raise ValueError("must be in the future")
    if value < _EPOCH:
        raise ValueError("must be after 1970-01-01T00:00:00Z")
    if value > now + _LATEST:
        raise ValueError(f"must be at most {MAX_DAYS} days from now")
    return value


class SubscriberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME, description="3-64 characters: letters, digits, _ . @ -")
    days: StrictInt | None = Field(default=None, ge=1, le=MAX_DAYS, description="subscription length from now")
    expires_at: AwareDatetime | None = Field(default=None, description="instead of days: when access ends")
    data_limit_gb: StrictFloat | None = Field(default=None, ge=0, le=1_000_000,
                                              description="GiB; null or 0: no limit")
    node_ids: list[str] | None = Field(default=None, max_length=1000, description="default: every node")
    regions: list[str] | None = Field(default=None, max_length=100, description="default: every region")
    note: str = Field(default="", max_length=1000)

    _expiry = field_validator("expires_at")(lambda cls, v: _expiry(v, future=True))
    _nodes = field_validator("node_ids")(lambda cls, v: _list_of(v, UUID, "a node id (UUID)"))
    _regions = field_validator("regions")(lambda cls, v: _list_of(v, REGION, "a region code"))


class SubscriberUpdate(BaseModel):
    """Only the fields given change. A new plan: days (from now) or expires_at, data_limit_gb."""

    model_config = ConfigDict(extra="forbid")
    username: str | None = Field(default=None, pattern=USERNAME)
    days: StrictInt | None = Field(default=None, ge=1, le=MAX_DAYS)
    expires_at: AwareDatetime | None = Field(default=None, description="may be in the past: expires the client now")
    data_limit_gb: StrictFloat | None = Field(default=None, ge=0, le=1_000_000)
    node_ids: list[str] | None = Field(default=None, max_length=1000)
    regions: list[str] | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=1000)

    _expiry = field_validator("expires_at")(lambda cls, v: _expiry(v, future=False))
    _nodes = field_validator("node_ids")(lambda cls, v: _list_of(v, UUID, "a node id (UUID)"))
    _regions = field_validator("regions")(lambda cls, v: _list_of(v, REGION, "a region code"))


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: StrictInt = Field(ge=1, le=MAX_DAYS)


def _list_of(values: list[str] | None, pattern: str, what: str) -> list[str] | None:
    if values is None:
        return None
    for v in values:
        if not isinstance(v, str) or not re.fullmatch(pattern, v):
            raise ValueError(f"{v!r} is not {what}")
    return [v.lower() if pattern == UUID else v for v in values]


def client_to_dict(sub: Subscriber, subscription_url: str) -> dict[str, Any]:
    """Seed 004's client fields, plus plan, usage and where the client may connect."""
    used = sub.used_upload_bytes + sub.used_download_bytes
    return {
        "id": sub.id,
        "username": sub.username,
        "short_uuid": sub.short_uuid,
        "subscription_url": subscription_url,
        "status": sub.status,
        "expires_at": iso(sub.expires_at),
        "expired": sub.expires_at <= utcnow(),
        "data_limit_bytes": sub.data_limit_bytes,
        "data_limit_gb": round(sub.data_limit_bytes / GIB, 3) if sub.data_limit_bytes else None,
        "used_upload_bytes": sub.used_upload_bytes,
        "used_download_bytes": sub.used_download_bytes,
        "used_bytes": used,
        "usage_reset_at": iso(sub.usage_reset_at),
        "node_ids": sub.node_ids,
        "regions": sub.regions,
        # the pre-per-node-id credential still works on every node (until rotation or the fleet cut-over)
        "shared_credential": sub.shared_credential,
        "note": sub.note,
        "created_at": iso(sub.created_at),
        "updated_at": iso(sub.updated_at),
    }


def _svc(request: Request) -> SubscriberService:
    return request.app.state.ctl.subscribers


def _id(request: Request) -> str:
    return path_uuid(request, "id", NOT_FOUND)


def _out(request: Request, sub: Subscriber, status: int = 200) -> Response:
    return json(client_to_dict(sub, _svc(request).subscription_url(sub)), status=status)


async def list_clients(request: Request):
    """Subscribers, oldest first.
    ---
    summary: List clients
    tags: [clients]
    parameters:
      - {name: status, in: query, schema: {type: string, enum: [active, blocked, expired, limited]}}
      - {name: expired, in: query, schema: {type: boolean}, description: "expires_at has passed (or not)"}
      - {name: search, in: query, schema: {type: string}, description: "username, note or id"}
      - {name: page, in: query, schema: {type: integer, minimum: 1}}
      - {name: size, in: query, schema: {type: integer, minimum: 1, maximum: 500}}
    responses:
      200: {description: "paginated list of clients"}
      422: {description: "bad filter"}
    """
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", {"status": "unknown status"})
    page, size = page_params(request)
    rows, total = await _svc(request).list(status=status, expired=query_bool(request, "expired"),
                                           search=request.query_params.get("search") or None, page=page, size=size)
    svc = _svc(request)
    return json(paginated([client_to_dict(r, svc.subscription_url(r)) for r in rows], total, page, size))


async def create_client(request: Request):
    """Create a subscriber: credentials valid on every node they may use, from now for `days`.
    ---
    summary: Create a client
    tags: [clients]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/SubscriberBody'}}}}
    responses:
      201: {description: "the client"}
      409: {description: "username taken"}
      422: {description: "invalid field (username, days, expires_at, data_limit_gb, node_ids, regions)"}
    """
    values = (await read_body(request, SubscriberBody)).model_dump(exclude_unset=True)
    sub = await _svc(request).create(values)
    request.state.created_id = sub.id
    return _out(request, sub, 201)


async def get_client(request: Request):
    """One subscriber.
    ---
    summary: Get a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
    """
    return _out(request, await _svc(request).get(_id(request)))


async def update_client(request: Request):
    """Change a subscriber: a new plan (days or expires_at, data_limit_gb), nodes/regions, username, note.
    ---
    summary: Update a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/SubscriberUpdate'}}}}
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
      409: {description: "username taken"}
      422: {description: "invalid field"}
    """
    client_id = _id(request)
    values = (await read_body(request, SubscriberUpdate)).model_dump(exclude_unset=True)
    for name in ("username", "days", "expires_at"):
        if name in values and values[name] is None:
            raise ValidationFailed(f"{name} cannot be null", {name: "cannot be null"})
    return _out(request, await _svc(request).update(client_id, values))


async def delete_client(request: Request):
    """Delete a subscriber for good: access is removed from every node, the record and usage are deleted.
    ---
    summary: Delete a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      204: {description: "deleted"}
      404: {description: "unknown client"}
    """
    await _svc(request).delete(_id(request))
    return Response(status_code=204)


async def extend_client(request: Request):
    """Add days to the subscription (from its end, or from now if it has ended).
    ---
    summary: Extend a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/ExtendBody'}}}}
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
      422: {description: "days missing or not 1..36500"}
    """
    client_id = _id(request)
    body = await read_body(request, ExtendBody)
    return _out(request, await _svc(request).extend(client_id, body.days))


async def block_client(request: Request):
    """Cut a subscriber off on every node (idempotent).
    ---
    summary: Block a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
    """
    return _out(request, await _svc(request).block(_id(request)))


async def unblock_client(request: Request):
    """Undo a block (idempotent); a client whose time or data ran out stays expired/limited.
    ---
    summary: Unblock a client
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
    """
    return _out(request, await _svc(request).unblock(_id(request)))


async def client_config(request: Request):
    """The subscription (seed 004's shape): `config_data` is the base64 subscription of share links.
    ---
    summary: Get a client's config
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "{client_id, short_uuid, subscription_url, config_data}"}
      404: {description: "unknown client"}
    """
    svc = _svc(request)
    sub = await svc.get(_id(request))
    return json(await _config(svc, sub))


async def rotate_client_config(request: Request):
    """New credentials and subscription URL; the old ones stop working on every node.
    ---
    summary: Rotate a client's config
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the new config, same shape as GET .../config"}
      404: {description: "unknown client"}
    """
    svc = _svc(request)
    sub = await svc.rotate(_id(request))
    return json(await _config(svc, sub))


async def _config(svc: SubscriberService, sub: Subscriber) -> dict[str, Any]:
    """config_data is what /sub/<short_uuid> serves by default: the base64 list of share links ("" while no
    running node serves the subscriber)."""
    endpoints = await svc.endpoints(sub)
    return {"client_id": sub.id, "short_uuid": sub.short_uuid, "subscription_url": svc.subscription_url(sub),
            "config_data": render_base64(endpoints, endpoint_credentials(sub)) if endpoints else ""}


async def client_usage(request: Request):
    """Transfer per node and per day (UTC), and the usage that counts against the data limit.
    ---
    summary: Get a client's usage
    tags: [clients]
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
      - {name: days, in: query, schema: {type: integer, minimum: 1, maximum: 366, default: 30}}
    responses:
      200: {description: "{client_id, since, nodes: [{node_id, node_name, days: [{date, upload_bytes, download_bytes, total_bytes}], ...}], period, used}"}
      404: {description: "unknown client"}
    """
    client_id = _id(request)
    days = query_int(request, "days", 30, 1, 366)
    return json(await _svc(request).usage(client_id, days))


async def reset_client_usage(request: Request):
    """Count towards the data limit from zero again (a limited client becomes active; history is kept).
    ---
    summary: Reset a client's usage
    tags: [clients]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
    """
    return _out(request, await _svc(request).reset_usage(_id(request)))


async def cut_over_shared_credentials(request: Request):
    """End every subscriber's legacy shared id (from before per-node ids) on every node at once.

    Subscribers made before per-node ids keep their old id, valid on every node, until their next rotation or
    this cut-over, so their apps work until they refresh the subscription (which already serves each node's
    own id). Apps that have not refreshed since lose access.
    ---
    summary: Cut over legacy shared credentials
    tags: [clients]
    responses:
      200: {description: "{subscribers: how many were cut over}"}
    """
    return json({"subscribers": await _svc(request).cut_over_shared_credentials()})


routes = [
    Route("/api/v1/clients/shared-credentials/cut-over", cut_over_shared_credentials, methods=["POST"]),
    Route("/api/v1/clients", list_clients, methods=["GET"]),
    Route("/api/v1/clients", create_client, methods=["POST"]),
    Route("/api/v1/clients/{id}", get_client, methods=["GET"]),
    Route("/api/v1/clients/{id}", update_client, methods=["PATCH"]),
    Route("/api/v1/clients/{id}", delete_client, methods=["DELETE"]),
    Route("/api/v1/clients/{id}/extend", extend_client, methods=["POST"]),
    Route("/api/v1/clients/{id}/block", block_client, methods=["POST"]),
    Route("/api/v1/clients/{id}/unblock", unblock_client, methods=["POST"]),
    Route("/api/v1/clients/{id}/config", client_config, methods=["GET"]),
    Route("/api/v1/clients/{id}/config/rotate", rotate_client_config, methods=["POST"]),
    Route("/api/v1/clients/{id}/usage", client_usage, methods=["GET"]),
    Route("/api/v1/clients/{id}/usage/reset", reset_client_usage, methods=["POST"]),
]
schemas = [SubscriberBody, SubscriberUpdate, ExtendBody]
