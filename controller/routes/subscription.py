"""The subscriber's own subscription URL: /sub/<short_uuid> (public; the short uuid is the secret)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controller.errors import NotFound, Unavailable, ValidationFailed
from controller.share_links import SUBSCRIPTION_FORMATS, pick_format, render, subscription_userinfo


async def subscription(request: Request):
    """Share links for every running node the subscriber may use, in the format their app reads.
    ---
    summary: Subscription
    tags: [subscription]
    security: []
    parameters:
      - {name: short_uuid, in: path, required: true, schema: {type: string}}
      - {name: format, in: query, schema: {type: string, enum: [base64, sing-box, clash]},
         description: "default: from the User-Agent (Clash/Mihomo: clash, sing-box apps: sing-box, else base64)"}
    responses:
      200: {description: "the subscription, with subscription-userinfo and profile-update-interval headers"}
      404: {description: "unknown or rotated subscription"}
      503: {description: "no running node the subscriber may use"}
      422: {description: "unknown format"}
    """
    ctl = request.app.state.ctl
    short_uuid = request.path_params["short_uuid"]
    if not 8 <= len(short_uuid) <= 64:
        raise NotFound("subscription not found")
    try:
        fmt = pick_format(request.headers.get("user-agent"), request.query_params.get("format"))
    except ValueError:
        raise ValidationFailed(f"format must be one of {', '.join(SUBSCRIPTION_FORMATS)}",
                               {"format": "unknown format"}) from None
    sub = await ctl.subscribers.by_short_uuid(short_uuid)
    # Blocked, expired and limited subscribers still get their subscription (their app shows why via the
    # userinfo header); the nodes refuse their credentials.
    endpoints = await ctl.subscribers.endpoints(sub)
    if not endpoints:  # an empty config would leave the app with nothing (or bypass the VPN): say so instead
        raise Unavailable("no running node serves this subscription right now; try again later")
    body, media_type = render(fmt, endpoints, sub.credential_uuid)
    headers = {
        "subscription-userinfo": subscription_userinfo(
            upload=sub.used_upload_bytes, download=sub.used_download_bytes, total=sub.data_limit_bytes or 0,
            expire=int(sub.expires_at.timestamp())),
        "profile-update-interval": str(ctl.settings.subscription_update_hours),
        "profile-title": sub.username,
        "content-disposition": f'attachment; filename="{sub.username}"',
        "cache-control": "no-store",
    }
    return Response(body, media_type=media_type, headers=headers)


routes = [Route("/sub/{short_uuid}", subscription, methods=["GET"])]
schemas: list = []
