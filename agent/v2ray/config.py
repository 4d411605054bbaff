"""V2Ray's (and Xray's: the same format) JSON configuration, rendered from a V2RaySpec and read back (pure).

Besides the desired inbounds, every rendered config carries what the agent needs to drive V2Ray or Xray:

    inbound "api"      dokodemo-door on 127.0.0.1:<api port>, routed to the "api" tag, where V2Ray serves
                       HandlerService (users), StatsService (traffic) and LoggerService
    "stats": {}        plus policy level 0 with statsUserUplink/Downlink: per-user traffic counters
    log                the error log file (and the access log only when asked for), tailed into live log lines
    outbound "direct"  freedom: subscribers' traffic leaves from the node
    outbound "blocked" blackhole: where the egress policy (agent.egress) sends what subscribers may not reach
    "vpnfleet"         {"core": "xray"}: which core the file is for (absent: V2Ray, as before cores). Both cores
                       ignore a top-level key they do not know; the agent reads it back, so a config on disk
                       (last_good.json) says which binary restarts it

Each inbound's transport follows its profile (agent.v2ray.spec):

    "" (plain TCP)          no streamSettings, as before profiles
    vless-reality-vision    streamSettings {network tcp, security reality, realitySettings {show false, dest,
                            xver 0, serverNames, privateKey, shortIds}}; every client has flow xtls-rprx-vision
    vmess-ws-tls, vless-ws-tls
                            streamSettings {network ws, security tls, tlsSettings {serverName, certificates
                            [{certificateFile, keyFile}]}, wsSettings {path}}: the form V2Ray 4.34 and Xray both
                            take (no "host" in wsSettings: on Xray it would restrict the Host clients send, a
                            CDN's included; V2Ray 4.34 has no such key)

Routing, first match wins (domainStrategy IPIfNonMatch: a name no domain rule matches is resolved and its
addresses matched against the IP rules, so a name that resolves to a private address is blocked too):

    1. the API inbound to the API (nothing else reaches it: it has no rule of its own for users)
    2. a user's inbound to the API's port, whatever address it names -> blocked
    3. "localhost" and its subdomains -> blocked
    4. the node itself (loopback, unspecified, every address of the node) -> blocked (before any exception)
    5. the operator's exceptions (egress.allowed_cidrs) -> direct
    6. the built-in blocked set and the operator's additions -> blocked
    7. BitTorrent, when blocked (the inbounds then sniff the protocol) -> blocked

Every user is a client of every inbound, at level 0 (where the user counters are switched on).
parse() is the inverse for the parts the driver compares: a config on disk tells what a V2Ray started by an
earlier agent process runs (render(parse(x)) renders x again, every profile included; a config from before
profiles or cores reads as plain TCP on V2Ray).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from agent.egress import IPV4_MAPPED, NODE_ITSELF, EgressSpec
from agent.v2ray.core import CORES, DEFAULT_CORE
from agent.v2ray.spec import (REALITY_PROFILE, RESERVED_TAG, WS_TLS_PROFILES, Inbound, Reality, Tls, V2RaySpec,
                              redact_credentials)

API_TAG = RESERVED_TAG
API_SERVICES = ["HandlerService", "StatsService", "LoggerService"]
OUTBOUND_TAG = "direct"
BLOCKED_TAG = "blocked"
USER_LEVEL = 0
#: V2Ray's domain matchers for the name "localhost" and every name under it.
LOCALHOST_DOMAINS = ["full:localhost", "domain:localhost"]
#: V2Ray's "no access log" value.
NO_ACCESS_LOG = "none"
#: The agent's own top-level key: which core the config is for (see the module docstring).
MARKER_KEY = "vpnfleet"


def _clients(spec: V2RaySpec, inbound: Inbound) -> list[dict[str, Any]]:
    if inbound.protocol == "vmess":
        # alterId 0: VMess AEAD, the only safe VMess mode (Xray ignores the key: AEAD is all it has).
        return [{"id": u, "alterId": 0, "email": e, "level": USER_LEVEL} for e, u in spec.users.items()]
    flow = inbound.flow
    if flow:
        return [{"id": u, "email": e, "level": USER_LEVEL, "flow": flow} for e, u in spec.users.items()]
    return [{"id": u, "email": e, "level": USER_LEVEL} for e, u in spec.users.items()]


def _stream_settings(inbound: Inbound) -> dict[str, Any] | None:
    """The transport of inbound's profile; None for plain TCP (no streamSettings at all, as before profiles)."""
    if inbound.reality is not None:
        reality = inbound.reality
        return {"network": "tcp", "security": "reality", "realitySettings": {
            "show": False, "dest": reality.dest, "xver": 0, "serverNames": list(reality.server_names),
            "privateKey": reality.private_key, "shortIds": list(reality.short_ids)}}
    if inbound.tls is not None:
        tls = inbound.tls
        return {"network": "ws", "security": "tls",
                "tlsSettings": {"serverName": tls.server_name,
                                "certificates": [{"certificateFile": tls.certificate_file, "keyFile": tls.key_file}]},
                "wsSettings": {"path": inbound.ws_path or "/"}}
    return None


def _inbound(spec: V2RaySpec, inbound: Inbound) -> dict[str, Any]:
    settings: dict[str, Any] = {"clients": _clients(spec, inbound)}
    if inbound.protocol == "vless":
        settings["decryption"] = "none"
    item: dict[str, Any] = {
        "tag": inbound.tag,
        "listen": inbound.listen,
        "port": inbound.port,
        "protocol": inbound.protocol,
        "settings": settings,
    }
    stream = _stream_settings(inbound)
    if stream is not None:
        item["streamSettings"] = stream
    if spec.egress is not None and spec.egress.block_bittorrent:
        # Sniffing tells the router the protocol; no destOverride, so destinations stay what the app asked for.
        item["sniffing"] = {"enabled": True, "destOverride": []}
    return item


def _v2ray_ips(networks: list[str]) -> list[str]:
    """CIDRs as V2Ray's IP rules take them: IPv4-mapped ranges left out (V2Ray matches those destinations as
    IPv4 addresses, so the IPv4 ranges cover them, and refuses a rule inside ::ffff:0:0/96)."""
    out = []
    for cidr in networks:
        network = ipaddress.ip_network(cidr)
        if network.version == 6 and network.subnet_of(IPV4_MAPPED):
            continue
        out.append(cidr)
    return out


def _rule(outbound: str, **match: Any) -> dict[str, Any]:
    return {"type": "field", **match, "outboundTag": outbound}


def routing(spec: V2RaySpec, api_port: int, node_addresses: list[str] = ()) -> dict[str, Any]:
    """The routing section: the API's own rule, then the egress policy (see the module docstring)."""
    egress = spec.egress or EgressSpec()
    rules = [_rule(API_TAG, inboundTag=[API_TAG])]
    if spec.inbounds:
        rules.append(_rule(BLOCKED_TAG, inboundTag=[i.tag for i in spec.inbounds], port=str(api_port)))
    rules.append(_rule(BLOCKED_TAG, domain=list(LOCALHOST_DOMAINS)))
    rules.append(_rule(BLOCKED_TAG, ip=_v2ray_ips(egress.node_itself(node_addresses))))
    if egress.allowed:
        rules.append(_rule(OUTBOUND_TAG, ip=_v2ray_ips(list(egress.allowed))))
    rules.append(_rule(BLOCKED_TAG, ip=_v2ray_ips(egress.blocked_networks())))
    if egress.block_bittorrent:
        rules.append(_rule(BLOCKED_TAG, protocol=["bittorrent"]))
    return {"domainStrategy": "IPIfNonMatch", "rules": rules}


def render(spec: V2RaySpec, api_port: int, access_log: str, error_log: str,
           node_addresses: list[str] = ()) -> dict[str, Any]:
    """The whole V2Ray configuration for spec, as a JSON-ready dict. node_addresses: the node's own addresses
    (agent.egress.node_addresses()), blocked like loopback."""
    api_inbound = {
        "tag": API_TAG,
        "listen": "127.0.0.1",
        "port": api_port,
        "protocol": "dokodemo-door",
        "settings": {"address": "127.0.0.1"},
    }
    config: dict[str, Any] = {
        "log": {"access": access_log if spec.access_log else NO_ACCESS_LOG, "error": error_log,
                "loglevel": spec.log_level},
        "api": {"tag": API_TAG, "services": list(API_SERVICES)},
        "stats": {},
        "policy": {"levels": {str(USER_LEVEL): {"statsUserUplink": True, "statsUserDownlink": True}}},
        "inbounds": [api_inbound] + [_inbound(spec, inbound) for inbound in spec.inbounds],
        "outbounds": [{"tag": OUTBOUND_TAG, "protocol": "freedom", "settings": {}},
                      {"tag": BLOCKED_TAG, "protocol": "blackhole", "settings": {}}],
        "routing": routing(spec, api_port, node_addresses),
    }
    if spec.core != DEFAULT_CORE.name:  # V2Ray's configs stay byte for byte what they were before cores
        config[MARKER_KEY] = {"core": spec.core}
    return config


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
            inbounds.append(_parse_inbound(item))
            if not users:  # every inbound has the same clients
                users = {client["email"]: client["id"] for client in item["settings"]["clients"]}
        level = config["log"]["loglevel"]
        access_log = config["log"].get("access") != NO_ACCESS_LOG
        egress = _parse_egress(config.get("routing") or {})
        core = str((config.get(MARKER_KEY) or {}).get("core") or DEFAULT_CORE.name)
        if core not in CORES:
            raise ValueError(f"core {core!r} is not one this agent knows")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # the exception, never the config, and redacted: the config holds credentials and REALITY private keys
        raise ValueError(redact_credentials(f"not a configuration written by the agent: {type(exc).__name__}: {exc}")
                         ) from None
    if not api_port:
        raise ValueError("not a configuration written by the agent: no API inbound")
    return V2RaySpec(inbounds=tuple(inbounds), users=users, log_level=level, egress=egress,
                     access_log=access_log, core=core), api_port


def _parse_inbound(item: dict[str, Any]) -> Inbound:
    """An inbound made by _inbound(), its profile read back from its streamSettings."""
    protocol = item["protocol"]
    head = (item["tag"], protocol, int(item["port"]), item["listen"])
    stream = item.get("streamSettings")
    if stream is None:
        return Inbound(*head)
    network, security = stream.get("network"), stream.get("security")
    if (network, security, protocol) == ("tcp", "reality", "vless"):
        settings = stream["realitySettings"]
        reality = Reality(private_key=settings["privateKey"], short_ids=tuple(settings["shortIds"]),
                          dest=settings["dest"], server_names=tuple(settings["serverNames"]))
        return Inbound(*head, profile=REALITY_PROFILE, reality=reality)
    profile = f"{protocol}-ws-tls"
    if (network, security) == ("ws", "tls") and profile in WS_TLS_PROFILES:
        settings = stream["tlsSettings"]
        (certificate,) = settings["certificates"]
        tls = Tls(certificate_file=certificate["certificateFile"], key_file=certificate["keyFile"],
                  server_name=settings["serverName"])
        return Inbound(*head, profile=profile, tls=tls, ws_path=stream["wsSettings"]["path"])
    raise ValueError(f"inbound {item['tag']!r}: transport {network}/{security} is not one the agent writes")


def _parse_egress(section: dict[str, Any]) -> EgressSpec | None:
    """The policy a routing section made by routing() enforces; None if it does not enforce this agent's
    built-in policy in full (an older config): the V2Ray running it must be restarted."""
    rules = section.get("rules") or []
    blocked_ip_rules = [r["ip"] for r in rules if r.get("outboundTag") == BLOCKED_TAG and "ip" in r]
    allowed = next((tuple(r["ip"]) for r in rules if r.get("outboundTag") == OUTBOUND_TAG and "ip" in r), ())
    bittorrent = any(r.get("protocol") == ["bittorrent"] for r in rules)
    spec = EgressSpec(blocked=(), allowed=allowed, block_bittorrent=bittorrent)
    builtin = _v2ray_ips(spec.blocked_networks())
    itself = _v2ray_ips([n.with_prefixlen for n in NODE_ITSELF])
    if (section.get("domainStrategy") != "IPIfNonMatch" or len(blocked_ip_rules) != 2
            or not any(r.get("domain") == LOCALHOST_DOMAINS for r in rules)
            or blocked_ip_rules[0][:len(itself)] != itself or blocked_ip_rules[1][:len(builtin)] != builtin):
        return None
    return dataclasses.replace(spec, blocked=tuple(blocked_ip_rules[1][len(builtin):]))
