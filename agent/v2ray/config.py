"""V2Ray's JSON configuration, rendered from a V2RaySpec and read back (pure functions).

Besides the desired inbounds, every rendered config carries what the agent needs to drive V2Ray:

    inbound "api"      dokodemo-door on 127.0.0.1:<api port>, routed to the "api" tag, where V2Ray serves
                       HandlerService (users), StatsService (traffic) and LoggerService
    "stats": {}        plus policy level 0 with statsUserUplink/Downlink: per-user traffic counters
    log                access and error log files, which the agent tails into live log lines
    outbound "direct"  freedom: subscribers' traffic leaves from the node

Every user is a client of every inbound, at level 0 (where the user counters are switched on).
parse() is the inverse for the parts the driver compares: a config on disk tells what a V2Ray started by an
earlier agent process runs.
"""

from __future__ import annotations

import json
from typing import Any

from agent.v2ray.spec import RESERVED_TAG, Inbound, V2RaySpec

API_TAG = RESERVED_TAG
API_SERVICES = ["HandlerService", "StatsService", "LoggerService"]
OUTBOUND_TAG = "direct"
USER_LEVEL = 0


def _clients(spec: V2RaySpec, protocol: str) -> list[dict[str, Any]]:
    if protocol == "vmess":
        # alterId 0: VMess AEAD, the only safe VMess mode.
        return [{"id": u, "alterId": 0, "email": e, "level": USER_LEVEL} for e, u in spec.users.items()]
    return [{"id": u, "email": e, "level": USER_LEVEL} for e, u in spec.users.items()]


def _inbound(spec: V2RaySpec, inbound: Inbound) -> dict[str, Any]:
    settings: dict[str, Any] = {"clients": _clients(spec, inbound.protocol)}
    if inbound.protocol == "vless":
        settings["decryption"] = "none"
    return {
        "tag": inbound.tag,
        "listen": inbound.listen,
        "port": inbound.port,
        "protocol": inbound.protocol,
        "settings": settings,
    }


def render(spec: V2RaySpec, api_port: int, access_log: str, error_log: str) -> dict[str, Any]:
    """The whole V2Ray configuration for spec, as a JSON-ready dict."""
    api_inbound = {
        "tag": API_TAG,
        "listen": "127.0.0.1",
        "port": api_port,
        "protocol": "dokodemo-door",
        "settings": {"address": "127.0.0.1"},
    }
    return {
        "log": {"access": access_log, "error": error_log, "loglevel": spec.log_level},
        "api": {"tag": API_TAG, "services": list(API_SERVICES)},
        "stats": {},
        "policy": {"levels": {str(USER_LEVEL): {"statsUserUplink": True, "statsUserDownlink": True}}},
        "inbounds": [api_inbound] + [_inbound(spec, inbound) for inbound in spec.inbounds],
        "outbounds": [{"tag": OUTBOUND_TAG, "protocol": "freedom", "settings": {}}],
        "routing": {"rules": [{"type": "field", "inboundTag": [API_TAG], "outboundTag": API_TAG}]},
    }


def dumps(config: dict[str, Any]) -> bytes:
    """The file content for a rendered config (compact: 10,000 users stay around 1 MB per inbound)."""
    return json.dumps(config, separators=(",", ":")).encode()


def parse(data: bytes | str) -> tuple[V2RaySpec, int]:
    """(spec, api port) of a config made by render(). Raises ValueError for anything else."""
    try:
        config = json.loads(data)
        inbounds: list[Inbound] = []
        users: dict[str, str] = {}
        api_port = 0
        for item in config["inbounds"]:
            if item["tag"] == API_TAG:
                api_port = int(item["port"])
                continue
            inbounds.append(Inbound(item["tag"], item["protocol"], int(item["port"]), item["listen"]))
            if not users:  # every inbound has the same clients
                users = {client["email"]: client["id"] for client in item["settings"]["clients"]}
        level = config["log"]["loglevel"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a configuration written by the agent: {exc!r}") from None
    if not api_port:
        raise ValueError("not a configuration written by the agent: no API inbound")
    return V2RaySpec(inbounds=tuple(inbounds), users=users, log_level=level), api_port
