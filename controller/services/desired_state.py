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
from controller.settings import Settings
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


def node_v2ray_inbounds(node: Node, vmess_port: int, vless_port: int) -> list[dict[str, Any]]:
    """The node's V2Ray inbounds: fixed at creation, or the settings' ports for nodes older than V2Ray."""
    if node.v2ray_inbounds:
        return list(node.v2ray_inbounds)
    return [{"tag": "vmess", "protocol": "vmess", "port": vmess_port, "listen": ""},
            {"tag": "vless", "protocol": "vless", "port": vless_port, "listen": ""}]


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
    """The V2Ray part of each node's desired state: its inbounds, the egress policy, and every live subscriber
    allowed on it with the subscriber's id for that node (plus the legacy shared id until its cut-over).

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
        inbounds = [agent_pb2.V2RayInbound(tag=i["tag"], protocol=i["protocol"], port=int(i["port"]),
                                           listen=i.get("listen") or "")
                    for i in node_v2ray_inbounds(node, settings.v2ray_port, settings.v2ray_vless_port)]
        out[node.uuid] = agent_pb2.V2RayConfig(inbounds=inbounds, users=users, log_level="warning",
                                               egress=egress_policy(settings, node),
                                               access_log=settings.v2ray_access_log,
                                               access_log_addresses=settings.v2ray_access_log_addresses)
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
