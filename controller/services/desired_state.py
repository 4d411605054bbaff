"""What each node should run: fleet defaults, then the node's own overrides, rendered as DesiredState."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import credentials
from controller.errors import ValidationFailed
from controller.models import Node, Subscriber, WireguardClient, WireguardServer, utcnow
from controller.settings import Settings, TlsSettings
from protos import agent_pb2

FLEET_AGENT_SETTINGS_KEY = "agent_settings"
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The agent settings the API may change (the rest, e.g. allow_private_targets, come from the config file only).
EDITABLE_AGENT_SETTINGS = ("metrics_interval_seconds", "log_level")


def validate_agent_settings(value: Any, field: str = "agent_settings") -> dict[str, Any]:
    """Check a (partial) agent settings object; returns it normalised. Raises ValidationFailed naming the field."""
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be an object", {field: "must be an object"})
    unknown = set(value) - set(EDITABLE_AGENT_SETTINGS)
    if unknown:
        name = f"{field}.{sorted(unknown)[0]}"
        raise ValidationFailed(f"unknown setting {name}", {name: "unknown setting"})
    out: dict[str, Any] = {}
    if "metrics_interval_seconds" in value:
        v = value["metrics_interval_seconds"]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 3600:
            name = f"{field}.metrics_interval_seconds"
            raise ValidationFailed(f"{name} must be an integer from 1 to 3600", {name: "must be 1..3600"})
        out["metrics_interval_seconds"] = v
    if "log_level" in value:
        v = value["log_level"]
        if v not in LOG_LEVELS:
            name = f"{field}.log_level"
            raise ValidationFailed(f"{name} must be one of {', '.join(LOG_LEVELS)}", {name: "bad level"})
        out["log_level"] = v
    return out


def effective_agent_settings(defaults: dict[str, Any], fleet: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **fleet, **node}


def render_desired_state(node: Node, settings: dict[str, Any],
                         wireguard: agent_pb2.WireGuardConfig | None = None,
                         v2ray: agent_pb2.V2RayConfig | None = None) -> agent_pb2.DesiredState:
    """The node's complete desired state at its current revision (pure: no I/O)."""
    state = agent_pb2.DesiredState(
        revision=node.desired_revision,
        agent=agent_pb2.AgentSettings(
            metrics_interval_seconds=int(settings["metrics_interval_seconds"]),
            log_level=str(settings["log_level"]),
            allow_private_targets=bool(settings.get("allow_private_targets", False)),
        ),
    )
    if wireguard is not None and wireguard.interfaces:
        state.wireguard.CopyFrom(wireguard)
    if v2ray is not None:
        state.v2ray.CopyFrom(v2ray)
    return state


# -- the node's V2Ray/Xray inbounds: transport profiles ------------------------------------------------------
#
# A node's inbounds are a profile set fixed by its core: on "xray", VMess and VLESS+REALITY+Vision; on
# "v2ray" (4.34 has no REALITY), VMess only; on both, the two WebSocket+TLS profiles when the operator
# configured v2ray.tls. VLESS never goes without TLS or REALITY. The ports come from the node's machine,
# set aside per slot at creation (Node.v2ray_ports), so a core switch or enabling TLS has its ports.
#
# Nodes from before cores have stored inbounds without profiles ([{tag, protocol, port, listen}], or None:
# the settings' ports) and core "v2ray". Until NodeService moves them (agent_connected, or a PATCH of the
# core), they are rendered as what they become: with the "xray" capability in their agent's Hello, Xray with
# VMess + VLESS-REALITY-Vision on the old VLESS port; without it, V2Ray with VMess only (the plain VLESS
# inbound is dropped). Subscribers' apps see the change at their next refresh.

#: profile -> (protocol, port slot). The slot names are the old inbound tags, so the old VLESS port becomes
#: the REALITY port.
PROFILES: dict[str, tuple[str, str]] = {
    "vmess": ("vmess", "vmess"),
    "vless-reality-vision": ("vless", "vless"),
    "vmess-ws-tls": ("vmess", "vmess-ws-tls"),
    "vless-ws-tls": ("vless", "vless-ws-tls"),
}
SLOTS = ("vmess", "vless", "vmess-ws-tls", "vless-ws-tls")
#: how an endpoint of each profile is named in subscriptions, after the node's name ("vless": the same name
#: the plain VLESS endpoint had, so apps that remember a selection by name keep it)
PROFILE_LABELS = {"vmess": "vmess", "vless-reality-vision": "vless", "vmess-ws-tls": "vmess-ws",
                  "vless-ws-tls": "vless-ws"}


def profile_set(core: str, tls: bool) -> list[str]:
    """The profiles a node of `core` serves (tls: v2ray.tls is configured)."""
    profiles = ["vmess"]
    if core == "xray":
        profiles.append("vless-reality-vision")
    if tls:
        profiles += ["vmess-ws-tls", "vless-ws-tls"]
    return profiles


def slot_ports(settings: Settings) -> dict[str, int]:
    """The settings' port of every slot (what an EC2 node uses; the local provider picks free ones)."""
    tls = settings.v2ray_tls
    return {"vmess": settings.v2ray_port, "vless": settings.v2ray_vless_port,
            "vmess-ws-tls": tls.vmess_port if tls else TlsSettings.vmess_port,
            "vless-ws-tls": tls.vless_port if tls else TlsSettings.vless_port}


def build_inbounds(core: str, ports: dict[str, dict[str, Any]], tls: bool) -> list[dict[str, Any]]:
    """The stored inbound list of a node: [{tag, protocol, port, listen, profile}] (ports: {slot: {port, listen}})."""
    out = []
    for profile in profile_set(core, tls):
        protocol, slot = PROFILES[profile]
        out.append({"tag": profile, "protocol": protocol, "port": int(ports[slot]["port"]),
                    "listen": ports[slot].get("listen") or "", "profile": profile})
    return out


def is_legacy(node: Node) -> bool:
    """Is the node from before cores (its stored inbounds have no profiles)?"""
    return not node.v2ray_inbounds or any(not i.get("profile") for i in node.v2ray_inbounds)


def node_core(node: Node) -> str:
    """The core the node runs: its own, or for a node from before cores what it moves to (see above)."""
    if is_legacy(node):
        return "xray" if "xray" in (node.capabilities or []) else "v2ray"
    return node.core


def node_ports(node: Node, defaults: dict[str, int]) -> dict[str, dict[str, Any]]:
    """{slot: {port, listen}} of the node: what it set aside, else (nodes from before cores) its stored inbounds'
    ports by protocol, else the defaults on the stored inbounds' listen address."""
    entries = [i for i in (node.v2ray_inbounds or []) if not i.get("profile")]
    listen = (entries[0].get("listen") or "") if entries else ""
    ports = {slot: {"port": int(port), "listen": listen} for slot, port in defaults.items()}
    for entry in entries:
        if entry.get("protocol") in ("vmess", "vless"):
            ports[entry["protocol"]] = {"port": int(entry["port"]), "listen": entry.get("listen") or ""}
    for slot, value in (node.v2ray_ports or {}).items():
        ports[slot] = {"port": int(value["port"]), "listen": value.get("listen") or ""}
    return ports


def node_v2ray_inbounds(node: Node, vmess_port: int, vless_port: int,
                        settings: Settings | None = None) -> list[dict[str, Any]]:
    """The node's inbounds [{tag, protocol, port, listen, profile}], VMess first. With `settings`, exactly what
    is served now (the ws-tls profiles only while v2ray.tls is configured); without, what the node stores.
    A node from before cores gets what it moves to, on its old ports (vmess_port / vless_port where it
    stored none)."""
    tls = settings is not None and settings.v2ray_tls is not None
    if is_legacy(node):
        defaults = slot_ports(settings) if settings is not None else {
            "vmess": vmess_port, "vless": vless_port, "vmess-ws-tls": TlsSettings.vmess_port,
            "vless-ws-tls": TlsSettings.vless_port}
        defaults |= {"vmess": vmess_port, "vless": vless_port}
        return build_inbounds(node_core(node), node_ports(node, defaults), tls)
    allowed = set(profile_set(node.core, tls)) if settings is not None else set(profile_set(node.core, True))
    return [dict(i) for i in node.v2ray_inbounds if i["profile"] in allowed]


def reality_target(node: Node, settings: Settings) -> tuple[str, list[str]]:
    """(dest, server names) of the node's REALITY: the node's own, else its region's, else the fleet's."""
    dest, names = settings.reality_target(node.region)
    return node.reality_dest or dest, list(node.reality_server_names or names)


def public_profile(node: Node, inbound: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What a subscriber's app needs of one inbound beyond host and port (controller.share_links.Endpoint's
    fields): the same on every fetch and in every format (the first server name, the first short id)."""
    profile = inbound["profile"]
    out: dict[str, Any] = {"profile": profile, "host": node.public_ip}
    if profile == "vless-reality-vision":
        out |= {"sni": reality_target(node, settings)[1][0], "public_key": node.reality_public_key,
                "short_id": (node.reality_short_ids or [""])[0]}
    elif profile.endswith("-ws-tls") and settings.v2ray_tls is not None:
        tls = settings.v2ray_tls
        out |= {"sni": tls.domain, "ws_host": tls.domain, "ws_path": node.ws_path or "/",
                "host": tls.address or node.public_ip}
    return out


def _inbound_message(node: Node, inbound: dict[str, Any], settings: Settings) -> agent_pb2.V2RayInbound:
    message = agent_pb2.V2RayInbound(tag=inbound["tag"], protocol=inbound["protocol"], port=int(inbound["port"]),
                                     listen=inbound.get("listen") or "", profile=inbound["profile"])
    if inbound["profile"] == "vless-reality-vision":
        dest, names = reality_target(node, settings)
        message.reality.CopyFrom(agent_pb2.RealitySettings(private_key=node.reality_private_key,
                                                           short_ids=list(node.reality_short_ids or []),
                                                           dest=dest, server_names=names))
    elif inbound["profile"].endswith("-ws-tls"):
        tls = settings.v2ray_tls
        assert tls is not None  # node_v2ray_inbounds(settings=...) serves these only with v2ray.tls
        message.tls.CopyFrom(agent_pb2.TlsSettings(certificate_file=tls.certificate_file, key_file=tls.key_file,
                                                   server_name=tls.domain))
        message.ws_path = node.ws_path or "/"
    return message


async def reachable_nodes(s: AsyncSession) -> list[Node]:
    """Running nodes with an address: what subscriptions and the local relay point at (oldest first)."""
    return list((await s.scalars(select(Node).where(Node.status == "running", Node.is_deleted.is_(False),
                                                    Node.public_ip.is_not(None))
                                 .order_by(Node.created_at, Node.id))).all())


def allowed_on(node_ids: list[str] | None, regions: list[str] | None, node_uuid: str, region: str) -> bool:
    """May a subscriber with this node/region selection use the node? No selection at all: every node."""
    if not node_ids and not regions:
        return True
    return node_uuid in (node_ids or ()) or region in (regions or ())


@dataclass(frozen=True)
class NodeUser:
    """A V2Ray user every node carries besides the subscribers (the local relay's own); like a subscriber's,
    its id differs per node, derived from `secret` (controller.credentials)."""

    email: str
    secret: str


def egress_policy(settings: Settings, node: Node) -> agent_pb2.EgressPolicy:
    """What subscribers may not reach from this node besides the agent's built-in set: the operator's
    additions and the node's own public address (an address the node itself may not see on an interface)."""
    blocked = list(settings.egress_blocked_cidrs)
    try:
        blocked.append(ipaddress.ip_network(node.public_ip or "").with_prefixlen)
    except ValueError:  # no address yet, or a name
        pass
    return agent_pb2.EgressPolicy(blocked_cidrs=blocked, allowed_cidrs=list(settings.egress_allowed_cidrs),
                                  block_bittorrent=settings.egress_block_bittorrent)


async def v2ray_desired(s: AsyncSession, nodes: list[Node], settings: Settings,
                        extra_users: Sequence[NodeUser] = ()) -> dict[str, agent_pb2.V2RayConfig]:
    """The V2Ray part of each node's desired state: its core, its inbounds (profiles with the node's REALITY
    key and target, or TLS files and ws path), the egress policy, and every live subscriber allowed on it
    with the subscriber's id for that node (plus the legacy shared id until its cut-over).

    Subscribers are read once for all the nodes. Each node gets ids only it can use, so the per-subscriber
    work is one MAC per node (controller.credentials).
    """
    now = utcnow()
    rows = (await s.execute(select(Subscriber.id, Subscriber.credential_secret, Subscriber.credential_uuid,
                                   Subscriber.shared_credential, Subscriber.node_ids, Subscriber.regions)
                            .where(Subscriber.status == "active", Subscriber.expires_at > now)
                            .order_by(Subscriber.id))).all()
    # The legacy shared ids are the same on every node: built once.
    shared = {r.id: agent_pb2.V2RayUser(email=credentials.shared_email(r.id), uuid=r.credential_uuid)
              for r in rows if r.shared_credential}
    out: dict[str, agent_pb2.V2RayConfig] = {}
    for node in nodes:
        users = [agent_pb2.V2RayUser(email=u.email, uuid=credentials.node_credential(u.secret, node.uuid))
                 for u in extra_users]
        for r in rows:
            if allowed_on(r.node_ids, r.regions, node.uuid, node.region):
                users.append(agent_pb2.V2RayUser(email=r.id, uuid=credentials.node_credential(r.credential_secret,
                                                                                              node.uuid)))
                if r.id in shared:
                    users.append(shared[r.id])
        inbounds = [_inbound_message(node, i, settings)
                    for i in node_v2ray_inbounds(node, settings.v2ray_port, settings.v2ray_vless_port, settings)]
        out[node.uuid] = agent_pb2.V2RayConfig(inbounds=inbounds, users=users, log_level="warning",
                                               egress=egress_policy(settings, node),
                                               access_log=settings.v2ray_access_log,
                                               access_log_addresses=settings.v2ray_access_log_addresses,
                                               core=node_core(node))
    return out


def client_is_live(client: WireguardClient, now: dt.datetime) -> bool:
    return client.status == "active" and (client.expires_at is None or client.expires_at > now)


async def wireguard_desired(s: AsyncSession, nodes: list[Node], settings: Settings
                            ) -> dict[str, agent_pb2.WireGuardConfig]:
    """The WireGuard part of each node's desired state: running servers with their live clients, and the
    egress policy their forwarded traffic is held to."""
    node_uuids = [n.uuid for n in nodes]
    now = utcnow()
    servers = (await s.scalars(select(WireguardServer).where(WireguardServer.node_uuid.in_(node_uuids),
                                                             WireguardServer.status == "running")
                               .order_by(WireguardServer.id))).all()
    clients = (await s.scalars(select(WireguardClient).where(WireguardClient.server_id.in_([x.id for x in servers]))
                               .order_by(WireguardClient.id))).all() if servers else []
    by_server: dict[int, list[WireguardClient]] = {}
    for c in clients:
        if client_is_live(c, now):
            by_server.setdefault(c.server_id, []).append(c)
    out: dict[str, agent_pb2.WireGuardConfig] = {}
    for srv in servers:
        iface = agent_pb2.WireGuardInterface(
            name=srv.interface, private_key=srv.private_key, listen_port=srv.listen_port,
            addresses=[a for a in (srv.ipv4_address, srv.ipv6_address) if a], mtu=srv.mtu, nat=srv.nat,
            peer_to_peer=srv.peer_to_peer,
            peers=[agent_pb2.WireGuardPeer(public_key=c.public_key, preshared_key=c.preshared_key or "",
                                           allowed_ips=[a for a in (c.ipv4_address, c.ipv6_address) if a],
                                           peer_id=str(c.id))
                   for c in by_server.get(srv.id, [])])
        out.setdefault(srv.node_uuid, agent_pb2.WireGuardConfig()).interfaces.append(iface)
    for node in nodes:
        if node.uuid in out:
            out[node.uuid].egress.CopyFrom(egress_policy(settings, node))
    return out
