"""Subscribers (seed 004's /api/v1/clients): create, plan changes, block, rotate, config, usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from controller.access import Access, requires
from controller.permissions import Permission as P
from controller.api import Ctl, Page, errors, page_of, uuid_or_404, uuid_path
from controller.models import Subscriber, utcnow
from controller.schemas.clients import (SubscriberConfig, SubscriberImport, SubscriberOut, ClientQuery,
                                        SubscriberUsage, CutOverResult, ExtendBody, SubscriberBody, SubscriberUpdate,
                                        UsageQuery)
from controller.serializers import iso
from controller.services.subscribers import GIB, SubscriberService, endpoint_credentials
from controller.share_links import render_base64
from controller.subscription_page import format_urls, import_links

router = APIRouter(tags=["clients"])

ClientId = Annotated[str, uuid_path("the client's UUID")]
#: reading subscribers: operators see every one, a user account the ones it owns
Viewer = Annotated[Access, requires(P.SUBSCRIBERS_VIEW, owned=True)]
NOT_FOUND = "client not found: "


def client_id(raw: str) -> str:
    """A client id from a path: a normalised UUID, or the route's 404 (a malformed id names no client)."""
    return uuid_or_404(raw, NOT_FOUND)


def client_to_dict(sub: Subscriber, subscription_url: str) -> dict[str, Any]:
    """Seed 004's client fields, plus plan, usage and where the client may connect (``SubscriberOut``)."""
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
        "owner_id": sub.owner_id,
        "created_at": iso(sub.created_at),
        "updated_at": iso(sub.updated_at),
    }


def _out(svc: SubscriberService, sub: Subscriber) -> dict[str, Any]:
    return client_to_dict(sub, svc.subscription_url(sub))


@router.post("/api/v1/clients/shared-credentials/cut-over", dependencies=[requires(P.SYSTEM_EDIT)], response_model=CutOverResult,
             summary="Cut over legacy shared credentials")
async def cut_over_shared_credentials(ctl: Ctl) -> dict[str, Any]:
    """End every subscriber's legacy shared id (from before per-node ids) on every node at once.

    Subscribers made before per-node ids keep their old id, valid on every node, until their next rotation or
    this cut-over, so their apps work until they refresh the subscription (which already serves each node's
    own id). Apps that have not refreshed since lose access.
    """
    return {"subscribers": await ctl.subscribers.cut_over_shared_credentials()}


@router.get("/api/v1/clients", response_model=Page[SubscriberOut], summary="List clients")
async def list_clients(q: Annotated[ClientQuery, Query()], ctl: Ctl, access: Viewer) -> dict[str, Any]:
    """Subscribers, oldest first (a user account: the ones it owns)."""
    svc = ctl.subscribers
    rows, total = await svc.list(status=q.status, expired=q.expired, search=q.search, page=q.page, size=q.size,
                                 owner_id=access.owner_filter(q.owner_id))
    return page_of([_out(svc, r) for r in rows], total, q)


@router.post("/api/v1/clients", dependencies=[requires(P.SUBSCRIBERS_EDIT)], status_code=201, response_model=SubscriberOut, responses=errors(409),
             summary="Create a client")
async def create_client(body: SubscriberBody, request: Request, ctl: Ctl) -> dict[str, Any]:
    """Create a subscriber: credentials valid on every node they may use, from now for `days` (or until
    `expires_at`). 409: the username is taken, in any case (`Alice` and `alice` are one name). 422: an
    invalid field (username, days, expires_at, data_limit_gb, node_ids, regions)."""
    sub = await ctl.subscribers.create(body)
    request.state.created_id = sub.id  # the operations log names the new client
    return _out(ctl.subscribers, sub)


@router.get("/api/v1/clients/{id}", response_model=SubscriberOut, responses=errors(404), summary="Get a client")
async def get_client(id: ClientId, ctl: Ctl, access: Viewer) -> dict[str, Any]:
    """One subscriber (a user account: only one it owns; others are 404)."""
    return _out(ctl.subscribers, await ctl.subscribers.get(client_id(id), access.owner_id))


@router.patch("/api/v1/clients/{id}", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberOut, responses=errors(404, 409),
              summary="Update a client")
async def update_client(id: ClientId, body: SubscriberUpdate, ctl: Ctl) -> dict[str, Any]:
    """Change a subscriber: a new plan (days or expires_at, data_limit_gb), nodes/regions, username, note.
    Only the fields given change; username, days and expires_at cannot be null. 409: the username is
    another client's (in any case)."""
    return _out(ctl.subscribers, await ctl.subscribers.update(client_id(id), body))


@router.delete("/api/v1/clients/{id}", dependencies=[requires(P.SUBSCRIBERS_EDIT)], status_code=204, response_class=Response,
               responses={204: {"description": "deleted"}, **errors(404)}, summary="Delete a client")
async def delete_client(id: ClientId, ctl: Ctl) -> Response:
    """Delete a subscriber for good: access is removed from every node, the record and usage are deleted."""
    await ctl.subscribers.delete(client_id(id))
    return Response(status_code=204)


@router.post("/api/v1/clients/{id}/extend", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberOut, responses=errors(404),
             summary="Extend a client")
async def extend_client(id: ClientId, body: ExtendBody, ctl: Ctl) -> dict[str, Any]:
    """Add days to the subscription (from its end, or from now if it has ended)."""
    return _out(ctl.subscribers, await ctl.subscribers.extend(client_id(id), body.days))


@router.post("/api/v1/clients/{id}/block", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberOut, responses=errors(404),
             summary="Block a client")
async def block_client(id: ClientId, ctl: Ctl) -> dict[str, Any]:
    """Cut a subscriber off on every node (idempotent)."""
    return _out(ctl.subscribers, await ctl.subscribers.block(client_id(id)))


@router.post("/api/v1/clients/{id}/unblock", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberOut, responses=errors(404),
             summary="Unblock a client")
async def unblock_client(id: ClientId, ctl: Ctl) -> dict[str, Any]:
    """Undo a block (idempotent); a client whose time or data ran out stays expired/limited."""
    return _out(ctl.subscribers, await ctl.subscribers.unblock(client_id(id)))


async def _config(svc: SubscriberService, sub: Subscriber) -> dict[str, Any]:
    """config_data is what /sub/<short_uuid> serves by default: the base64 list of share links ("" while no
    running node serves the subscriber)."""
    endpoints = await svc.endpoints(sub)
    return {"client_id": sub.id, "short_uuid": sub.short_uuid, "subscription_url": svc.subscription_url(sub),
            "config_data": render_base64(endpoints, endpoint_credentials(sub)) if endpoints else ""}


@router.get("/api/v1/clients/{id}/config", response_model=SubscriberConfig, responses=errors(404),
            summary="Get a client's config")
async def client_config(id: ClientId, ctl: Ctl, access: Viewer) -> dict[str, Any]:
    """The subscription (seed 004's shape): `config_data` is the base64 subscription of share links."""
    svc = ctl.subscribers
    return await _config(svc, await svc.get(client_id(id), access.owner_id))


@router.get("/api/v1/clients/{id}/import", response_model=SubscriberImport, responses=errors(404),
            summary="Get a client's import links")
async def client_import(id: ClientId, ctl: Ctl, access: Viewer) -> dict[str, Any]:
    """What the subscriber's page offers: the subscription URL per format (for QR codes) and one-tap import
    links for v2rayNG, sing-box, Clash/mihomo, Shadowrocket, Hiddify and Streisand."""
    svc = ctl.subscribers
    sub = await svc.get(client_id(id), access.owner_id)
    url = svc.subscription_url(sub)
    return {"client_id": sub.id, "subscription_url": url, "available": bool(await svc.endpoints(sub)),
            "formats": [{"name": name, "url": u} for name, u in format_urls(url)],
            "import_links": [{"app": app, "url": link} for app, link in import_links(url, sub.username)]}


@router.post("/api/v1/clients/{id}/config/rotate", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberConfig, responses=errors(404),
             summary="Rotate a client's config")
async def rotate_client_config(id: ClientId, ctl: Ctl) -> dict[str, Any]:
    """New credentials and subscription URL; the old ones stop working on every node. Returns the new config,
    the same shape as GET .../config."""
    svc = ctl.subscribers
    return await _config(svc, await svc.rotate(client_id(id)))


@router.get("/api/v1/clients/{id}/usage", response_model=SubscriberUsage, responses=errors(404),
            summary="Get a client's usage")
async def client_usage(id: ClientId, q: Annotated[UsageQuery, Query()], ctl: Ctl, access: Viewer) -> dict[str, Any]:
    """Transfer per node and per day (UTC), and the usage that counts against the data limit."""
    return await ctl.subscribers.usage(client_id(id), q.days, access.owner_id)


@router.post("/api/v1/clients/{id}/usage/reset", dependencies=[requires(P.SUBSCRIBERS_EDIT)], response_model=SubscriberOut, responses=errors(404),
             summary="Reset a client's usage")
async def reset_client_usage(id: ClientId, ctl: Ctl) -> dict[str, Any]:
    """Count towards the data limit from zero again (a limited client becomes active; history is kept)."""
    return _out(ctl.subscribers, await ctl.subscribers.reset_usage(client_id(id)))
