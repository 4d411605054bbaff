"""The subscriber's own subscription URL: /sub/<short_uuid> (public; the short uuid is the secret)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from starlette.responses import HTMLResponse, Response

from controller.access import public
from controller.api import Ctl, errors
from controller.errors import NotFound, Unavailable
from controller.schemas.clients import SubscriptionQuery
from controller.services.subscribers import endpoint_credentials
from controller.share_links import MEDIA_TYPES, NoEndpoints, pick_format, render, subscription_userinfo
from controller.subscription_page import CSP, PageFacts, pick_locale, render_page

router = APIRouter(tags=["subscription"])

#: what services.subscribers.new_short_uuid makes (22 characters), with room for other lengths
_SHORT_UUID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _is_browser(user_agent: str | None, accept: str | None) -> bool:
    """A person's browser, not an app: it asks for HTML and says Mozilla/ (every browser does; the apps say
    v2rayNG/, Shadowrocket/, SFA/, clash-verge/, okhttp/, Go-http-client/, ...)."""
    return "text/html" in (accept or "") and (user_agent or "").startswith("Mozilla/")


def _media(media_type: str) -> str:
    return media_type.split(";", 1)[0]


def _body_schemas() -> dict[str, Any]:
    """The 200 bodies, per media type (controller.share_links.MEDIA_TYPES): base64 share links as text,
    sing-box profiles as JSON, Clash/mihomo profiles as YAML."""
    described = {
        "text/plain": {"schema": {"type": "string", "description": "base64 of the share links (vmess://, "
                                                                   "vless://), one a line"}},
        "application/json": {"schema": {"type": "object", "description": "a sing-box profile (sing-box, "
                                                                         "sing-box-tun)"}},
        "text/yaml": {"schema": {"type": "object", "description": "a Clash/mihomo profile (clash, "
                                                                  "clash-legacy)"}},
    }
    assert {_media(m) for m in MEDIA_TYPES.values()} == set(described), "a format's media type is undocumented"
    return {**described, "text/html": {"schema": {"type": "string", "description": "the subscriber's page (a "
                                                                                   "browser's Accept: text/html)"}}}


_HEADERS = {
    "subscription-userinfo": "upload=<bytes>; download=<bytes>; total=<data limit bytes, 0: none>; "
                             "expire=<unix seconds>",
    "profile-update-interval": "hours between the app's refreshes",
    "profile-title": "the username",
    "content-disposition": "attachment; filename=<the username>",
    "cache-control": "no-store",
}
_OK = {"description": "the subscription in the format asked for (or the app's, from its User-Agent)",
       "content": _body_schemas(),
       "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in _HEADERS.items()}}
_UNAVAILABLE = {"description": "no running node the subscriber may use (or none in this format)"}


@router.get("/sub/{short_uuid}", dependencies=[public()], response_class=Response, summary="Subscription",
            responses={200: _OK, **errors(404), 503: {**errors(503)[503], **_UNAVAILABLE}})
async def subscription(short_uuid: Annotated[str, Path(description="the secret of the subscription URL")],
                       q: Annotated[SubscriptionQuery, Query()], ctl: Ctl,
                       user_agent: Annotated[str | None, Header(include_in_schema=False)] = None,
                       accept: Annotated[str | None, Header(include_in_schema=False)] = None,
                       accept_language: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
    """Share links / profiles for every running node the subscriber may use, in the format their app reads.

    Every node serves its transport profiles: VMess, VLESS+REALITY+XTLS-Vision (Xray nodes), and VMess/VLESS
    over WebSocket+TLS where the operator configured a domain; never VLESS without TLS or REALITY. A node's
    REALITY public key, short id and server name are the same in every fetch and every format. Blocked,
    expired and limited subscribers still get it (their app shows why through subscription-userinfo); the
    nodes refuse their credentials. 404: unknown or rotated subscription.

    Media types: `text/plain` (base64: share links for v2rayN, v2rayNG, Shadowrocket, ...),
    `application/json` (sing-box, sing-box-tun), `text/yaml` (clash, clash-legacy). A browser (Accept:
    text/html, no app's User-Agent, no `format`) gets the subscriber's page instead: status, usage, expiry, a
    QR code per format, one-tap import links and per-platform steps, in English, Chinese or Russian (`lang`).
    """
    if not _SHORT_UUID.fullmatch(short_uuid):  # never generated by us: no need to ask the database
        raise NotFound("subscription not found")
    fmt = pick_format(user_agent, q.format)  # q.format is one pick_format accepts (SubscriptionFormat)
    sub = await ctl.subscribers.by_short_uuid(short_uuid)
    endpoints = await ctl.subscribers.endpoints(sub)
    if q.format is None and fmt == "base64" and _is_browser(user_agent, accept):
        facts = PageFacts(username=sub.username, status=sub.status,
                          used_bytes=sub.used_upload_bytes + sub.used_download_bytes, limit_bytes=sub.data_limit_bytes,
                          expires_at=sub.expires_at, subscription_url=ctl.subscribers.subscription_url(sub),
                          available=bool(endpoints))
        return HTMLResponse(render_page(facts, pick_locale(q.lang, accept_language)), headers={
            "content-security-policy": CSP, "cache-control": "no-store", "vary": "Accept, Accept-Language, User-Agent"})
    if not endpoints:  # an empty config would leave the app with nothing (or bypass the VPN): say so instead
        raise Unavailable("no running node serves this subscription right now; try again later")
    try:
        body, media_type = render(fmt, endpoints, endpoint_credentials(sub))
    except NoEndpoints:  # none in this format (clash-legacy has no VLESS)
        raise Unavailable(f"no running node serves this subscription in the {fmt} format right now") from None
    headers = {
        "subscription-userinfo": subscription_userinfo(
            upload=sub.used_upload_bytes, download=sub.used_download_bytes, total=sub.data_limit_bytes or 0,
            expire=max(0, int(sub.expires_at.timestamp()))),
        "profile-update-interval": str(ctl.settings.subscription_update_hours),
        "profile-title": sub.username,
        "content-disposition": f'attachment; filename="{sub.username}"',
        "cache-control": "no-store",
        "vary": "Accept, Accept-Language, User-Agent",
    }
    return Response(body, media_type=media_type, headers=headers)
