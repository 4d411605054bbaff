"""What each node should run: fleet defaults, then the node's own overrides, rendered as DesiredState."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import ValidationFailed
from controller.models import Node, Subscriber, WireguardClient, WireguardServer, utcnow
from protos import agent_pb2

FLEET_AGENT_SETTINGS_KEY = "agent_settings"
LOG_LEVELS = ("debug", "info", "warning", "error")


def validate_agent_settings(value: Any, field: str = "agent_settings") -> dict[str, Any]:
    """Check a (partial) agent settings object; returns it normalised. Raises ValidationFailed naming the field."""
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be an object", {field: "must be an object"})
    unknown = set(value) - {"metrics_interval_seconds", "log_level"}
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


async def v2ray_desired(s: AsyncSession, nodes: list[Node], vmess_port: int, vless_port: int,
                        extra_users: list[agent_pb2.V2RayUser] = ()) -> dict[str, agent_pb2.V2RayConfig]:
    """The V2Ray part of each node's desired state: its inbounds and every live subscriber allowed on it.

    Subscribers are read once for all the nodes; the users of unrestricted subscribers are built once and
    shared, so rendering 10,000 subscribers for many nodes stays cheap.
    """
    now = utcnow()
    rows = (await s.execute(select(Subscriber.id, Subscriber.credential_uuid, Subscriber.node_ids,
                                   Subscriber.regions)
                            .where(Subscriber.status == "active", Subscriber.expires_at > now)
                            .order_by(Subscriber.id))).all()
    everywhere = list(extra_users) + [agent_pb2.V2RayUser(email=r.id, uuid=r.credential_uuid)
                                      for r in rows if not r.node_ids and not r.regions]
    restricted = [r for r in rows if r.node_ids or r.regions]
    out: dict[str, agent_pb2.V2RayConfig] = {}
    for node in nodes:
        users = everywhere + [agent_pb2.V2RayUser(email=r.id, uuid=r.credential_uuid) for r in restricted
                              if allowed_on(r.node_ids, r.regions, node.uuid, node.region)]
        inbounds = [agent_pb2.V2RayInbound(tag=i["tag"], protocol=i["protocol"], port=int(i["port"]),
                                           listen=i.get("listen") or "")
                    for i in node_v2ray_inbounds(node, vmess_port, vless_port)]
        out[node.uuid] = agent_pb2.V2RayConfig(inbounds=inbounds, users=users, log_level="warning")
    return out


def client_is_live(client: WireguardClient, now: dt.datetime) -> bool:
    return client.status == "active" and (client.expires_at is None or client.expires_at > now)


async def wireguard_desired(s: AsyncSession, node_uuids: list[str]) -> dict[str, agent_pb2.WireGuardConfig]:
    """The WireGuard part of each node's desired state: running servers with their live clients."""
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
            peers=[agent_pb2.WireGuardPeer(public_key=c.public_key, preshared_key=c.preshared_key or "",
                                           allowed_ips=[a for a in (c.ipv4_address, c.ipv6_address) if a],
                                           peer_id=str(c.id))
                   for c in by_server.get(srv.id, [])])
        out.setdefault(srv.node_uuid, agent_pb2.WireGuardConfig()).interfaces.append(iface)
    return out
