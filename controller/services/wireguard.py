"""WireGuard servers (interfaces on nodes) and their clients (peers): rules, addresses, keys, desired state.

Every change that affects a node bumps that node's desired revision and pushes it; the agent applies peer
changes incrementally, so other peers keep their sessions.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import psutil
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.services.owners import check_owner
from controller.db import fetch_page
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.hub.hub import Hub
from controller.ipam import allocate_address, check_address, check_no_overlap, check_outside_node, host_cidr
from controller.models import Node, WireguardClient, WireguardServer, utcnow
from controller.schemas.wireguard import ClientBody, ClientUpdate, ServerBody, ServerUpdate
from controller.wireguard_config import format_endpoint, render_client_config
from controller.wireguard_keys import generate_keypair, generate_preshared_key, public_key_of, validate_key

CLIENT_STATUSES = ("active", "disabled")
SERVER_STATUSES = ("running", "stopped")
FAMILIES = ("ipv4_address", "ipv6_address")
#: the most peers one server status lists (a server's peers fit in its subnet; this bounds a huge one)
MAX_STATUS_PEERS = 100_000


def _network(address: str | None) -> str | None:
    return str(ipaddress.ip_interface(address).network) if address else None


def _host(address: str | None) -> str | None:
    return str(ipaddress.ip_interface(address).ip) if address else None


def host_networks(exclude_interfaces: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """The networks on this machine's interfaces (``"interface eth0" -> "192.0.2.0/24"``): a local node's own,
    since local nodes run here. ``exclude_interfaces``: the WireGuard server's own interface (its subnet is
    on the machine because the server runs)."""
    out: dict[str, str] = {}
    for name, addresses in psutil.net_if_addrs().items():
        if name in exclude_interfaces:
            continue
        for a in addresses:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            try:
                ip = ipaddress.ip_address(a.address.split("%", 1)[0])  # fe80::1%eth0
                prefix = bin(int(ipaddress.ip_address(a.netmask))).count("1")
                out[f"interface {name} {ip}"] = str(ipaddress.ip_interface(f"{ip}/{prefix}").network)
            except ValueError:
                continue
    return out


def node_networks(node: Node, interface: str | None = None) -> dict[str, str]:
    """What the controller knows of a node's own networks: its public and private addresses, and for a local
    node the networks of this machine (the agent does not report its interfaces)."""
    out: dict[str, str] = {}
    for what, value in (("the node's public address", node.public_ip), ("the node's private address", node.private_ip)):
        try:
            out[what] = str(ipaddress.ip_network(value)) if value else ""
        except ValueError:
            pass  # not an address (never written so by a provider): nothing to compare
    if node.provider == "local":
        out.update(host_networks({interface} if interface else set()))
    return {k: v for k, v in out.items() if v}


class WireguardService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub) -> None:
        self._sessions = sessions
        self._hub = hub

    # -- servers --------------------------------------------------------------------------------------------
    async def list_servers(self, *, node_id: str | None, status: str | None, search: str | None, page: int,
                           size: int) -> tuple[list[tuple[WireguardServer, int]], int]:
        query = select(WireguardServer)
        if node_id:
            query = query.where(WireguardServer.node_uuid == node_id)
        if status:
            query = query.where(WireguardServer.status == status)
        if search:
            query = query.where(or_(WireguardServer.name.icontains(search, autoescape=True),
                                    WireguardServer.interface.icontains(search, autoescape=True),
                                    WireguardServer.description.icontains(search, autoescape=True)))
        async with self._sessions() as s:
            rows, total = await fetch_page(s, query, (WireguardServer.id,), page, size)
            counts = dict((await s.execute(
                select(WireguardClient.server_id, func.count()).where(
                    WireguardClient.server_id.in_([r.id for r in rows])).group_by(WireguardClient.server_id))).all())
        return [(r, counts.get(r.id, 0)) for r in rows], total

    async def get_server(self, server_id: int) -> WireguardServer:
        async with self._sessions() as s:
            server = await s.get(WireguardServer, server_id)
        if server is None:
            raise NotFound(f"WireGuard server {server_id} not found")
        return server

    async def server_clients(self, server_id: int) -> list[WireguardClient]:
        """The server's peers, in id order (its status page)."""
        async with self._sessions() as s:
            return list((await s.scalars(select(WireguardClient).where(WireguardClient.server_id == server_id)
                                         .order_by(WireguardClient.id).limit(MAX_STATUS_PEERS))).all())

    async def create_server(self, cmd: ServerBody) -> WireguardServer:
        node_id = str(cmd.node_id)
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id, Node.is_deleted.is_(False)))
            if node is None:
                raise ValidationFailed(f"node {node_id} not found", {"node_id": "unknown node"})
            if not cmd.ipv4_address and not cmd.ipv6_address:
                raise ValidationFailed("a server needs ipv4_address and/or ipv6_address",
                                       {"ipv4_address": "required unless ipv6_address is given"})
            values = cmd.model_dump()
            self._check_outside_node(node, values, FAMILIES, interface=None)
            await self._check_unique_on_node(s, node.uuid, values, exclude_id=None)
            private_key, public_key = generate_keypair()
            server = WireguardServer(
                node_uuid=node.uuid, name=cmd.name, interface=cmd.interface, listen_port=cmd.listen_port,
                ipv4_address=cmd.ipv4_address, ipv6_address=cmd.ipv6_address, private_key=private_key,
                public_key=public_key, dns_servers=cmd.dns_servers, mtu=cmd.mtu,
                persistent_keepalive=cmd.persistent_keepalive,
                allowed_ips=cmd.allowed_ips or ["0.0.0.0/0", "::/0"], nat=cmd.nat, peer_to_peer=cmd.peer_to_peer,
                endpoint_host=cmd.endpoint_host, auto_start=cmd.auto_start,
                status="running" if cmd.auto_start else "stopped", description=cmd.description,
            )
            s.add(server)
            await self._bump(s, node.uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return server

    async def update_server(self, server_id: int, cmd: ServerUpdate) -> WireguardServer:
        return await self._update_server(server_id, cmd.changes())

    async def set_server_status(self, server_id: int, status: str) -> WireguardServer:
        if status not in SERVER_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(SERVER_STATUSES)}", {"status": "unknown"})
        return await self._update_server(server_id, {"status": status})

    async def _update_server(self, server_id: int, values: dict[str, Any]) -> WireguardServer:
        async with self._sessions() as s:
            server = await s.get(WireguardServer, server_id)
            if server is None:
                raise NotFound(f"WireGuard server {server_id} not found")
            merged = {"interface": server.interface, "listen_port": server.listen_port,
                      "ipv4_address": server.ipv4_address, "ipv6_address": server.ipv6_address, **values}
            if not merged["ipv4_address"] and not merged["ipv6_address"]:
                raise ValidationFailed("a server needs ipv4_address and/or ipv6_address",
                                       {next(f for f in FAMILIES if f in values): "the server's last subnet"})
            changed = [f for f in FAMILIES if f in values and _network(values[f]) != _network(getattr(server, f))]
            node = await s.scalar(select(Node).where(Node.uuid == server.node_uuid))
            if node is not None:
                # only a changed subnet: a running server's own subnet is on a local node's machine already
                self._check_outside_node(node, merged, changed, interface=server.interface)
            if changed and await s.scalar(select(func.count()).where(WireguardClient.server_id == server_id)):
                raise Conflict("the subnet of a server with clients cannot change; remove the clients first")
            await self._check_unique_on_node(s, server.node_uuid, merged, exclude_id=server.id)
            for key, value in values.items():
                setattr(server, key, value)
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return server

    async def delete_server(self, server_id: int) -> None:
        async with self._sessions() as s:
            server = await s.get(WireguardServer, server_id)
            if server is None:
                raise NotFound(f"WireGuard server {server_id} not found")
            await s.delete(server)
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])

    @staticmethod
    def _check_outside_node(node: Node, values: dict[str, Any], families: tuple[str, ...] | list[str],
                            interface: str | None) -> None:
        networks = None
        for family in families:
            if values.get(family):
                networks = node_networks(node, interface) if networks is None else networks
                check_outside_node(_network(values[family]), networks, family)

    async def _check_unique_on_node(self, s: AsyncSession, node_uuid: str, values: dict[str, Any],
                                    exclude_id: int | None) -> None:
        others = (await s.scalars(select(WireguardServer).where(WireguardServer.node_uuid == node_uuid,
                                                                WireguardServer.id != (exclude_id or -1)))).all()
        for other in others:
            if other.interface == values["interface"]:
                raise Conflict(f"interface {values['interface']} already exists on this node",
                               {"interface": "already used on the node"})
            if other.listen_port == values["listen_port"]:
                raise Conflict(f"port {values['listen_port']} is already used by server {other.name}",
                               {"listen_port": "already used on the node"})
        for family in FAMILIES:
            if values.get(family):
                existing = {o.name: _network(getattr(o, family)) for o in others if getattr(o, family)}
                check_no_overlap(_network(values[family]), existing, family)

    # -- clients --------------------------------------------------------------------------------------------
    async def list_clients(self, *, server_id: int | None, status: str | None, search: str | None, page: int,
                           size: int, owner_id: int | None = None) -> tuple[list[WireguardClient], int]:
        """A page of peers; with ``owner_id``, only that account's."""
        query = select(WireguardClient)
        if owner_id is not None:
            query = query.where(WireguardClient.owner_id == owner_id)
        if server_id is not None:
            query = query.where(WireguardClient.server_id == server_id)
        if status:
            query = query.where(WireguardClient.status == status)
        if search:
            query = query.where(or_(WireguardClient.name.icontains(search, autoescape=True),
                                    WireguardClient.ipv4_address.icontains(search, autoescape=True),
                                    WireguardClient.public_key.icontains(search, autoescape=True)))
        async with self._sessions() as s:
            return await fetch_page(s, query, (WireguardClient.id,), page, size)

    async def get_client(self, client_id: int, owner_id: int | None = None
                         ) -> tuple[WireguardClient, WireguardServer, Node]:
        """A peer with its server and node; with ``owner_id``, only if that account owns it (else 404)."""
        async with self._sessions() as s:
            client = await s.get(WireguardClient, client_id)
            if client is None or (owner_id is not None and client.owner_id != owner_id):
                raise NotFound(f"WireGuard client {client_id} not found")
            server = await s.get(WireguardServer, client.server_id)
            node = await s.scalar(select(Node).where(Node.uuid == server.node_uuid))
        return client, server, node

    async def create_client(self, cmd: ClientBody) -> WireguardClient:
        values = cmd.model_dump()
        async with self._sessions() as s:
            server = await s.get(WireguardServer, cmd.server_id)
            if server is None:
                raise ValidationFailed(f"WireGuard server {cmd.server_id} not found", {"server_id": "unknown server"})
            peers = (await s.scalars(select(WireguardClient).where(WireguardClient.server_id == server.id))).all()
            keepalive = server.persistent_keepalive if cmd.persistent_keepalive is None else cmd.persistent_keepalive
            client = WireguardClient(server_id=server.id, name=cmd.name,
                                     dns_servers=cmd.dns_servers or server.dns_servers,
                                     allowed_ips=cmd.allowed_ips or server.allowed_ips,
                                     persistent_keepalive=keepalive, expires_at=cmd.expires_at,
                                     description=cmd.description, owner_id=await check_owner(s, cmd.owner_id))
            self._assign_addresses(client, server, list(peers), values)
            self._assign_keys(client, list(peers), values)
            s.add(client)
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return client

    @staticmethod
    def _assign_addresses(client: WireguardClient, server: WireguardServer, peers: list[WireguardClient],
                          values: dict[str, Any]) -> None:
        for family in FAMILIES:
            subnet = _network(getattr(server, family))
            given = values.get(family)
            if subnet is None:
                if given:
                    raise ValidationFailed(f"the server has no {family.split('_')[0]} subnet", {family: "no subnet"})
                continue
            taken = [_host(getattr(p, family)) for p in peers if getattr(p, family)]
            reserved = [_host(getattr(server, family))]
            if given:
                host = check_address(subnet, given, taken, family, reserved=reserved)
            elif values.get("auto_assign_ip", True):
                host = allocate_address(subnet, taken, reserved=reserved, field=family)
            else:
                continue
            setattr(client, family, host_cidr(host))

    @staticmethod
    def _assign_keys(client: WireguardClient, peers: list[WireguardClient], values: dict[str, Any]) -> None:
        if values.get("private_key"):
            client.private_key = validate_key(values["private_key"], "private_key")
            client.public_key = public_key_of(client.private_key)
        elif values.get("public_key"):
            client.public_key = validate_key(values["public_key"], "public_key")
        else:
            client.private_key, client.public_key = generate_keypair()
        if any(p.public_key == client.public_key for p in peers):
            raise Conflict("this public key is already a peer of the server", {"public_key": "duplicate"})
        psk = values.get("preshared_key")
        client.preshared_key = validate_key(psk, "preshared_key") if psk else (
            generate_preshared_key() if values.get("use_preshared_key", True) else None)

    async def update_client(self, client_id: int, cmd: ClientUpdate) -> WireguardClient:
        values = cmd.changes()
        async with self._sessions() as s:
            client = await s.get(WireguardClient, client_id)
            if client is None:
                raise NotFound(f"WireGuard client {client_id} not found")
            server = await s.get(WireguardServer, client.server_id)
            given = {f: values[f] for f in FAMILIES if values.get(f)}
            if given:
                peers = (await s.scalars(select(WireguardClient).where(WireguardClient.server_id == server.id,
                                                                       WireguardClient.id != client.id))).all()
                self._assign_addresses(client, server, list(peers), given | {"auto_assign_ip": False})
            for family in FAMILIES:
                if family in values and values[family] is None:
                    setattr(client, family, None)  # null: the peer no longer has an address of that family
            for key in ("name", "dns_servers", "allowed_ips", "persistent_keepalive", "expires_at", "description",
                        "status"):
                if key in values:
                    setattr(client, key, values[key])
            if "owner_id" in values:
                client.owner_id = await check_owner(s, values["owner_id"])
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return client

    async def delete_client(self, client_id: int) -> None:
        async with self._sessions() as s:
            client = await s.get(WireguardClient, client_id)
            if client is None:
                raise NotFound(f"WireGuard client {client_id} not found")
            server = await s.get(WireguardServer, client.server_id)
            await s.delete(client)
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])

    async def client_config(self, client_id: int, owner_id: int | None = None) -> tuple[WireguardClient, str]:
        client, server, node = await self.get_client(client_id, owner_id)
        endpoint = format_endpoint(server.endpoint_host or node.public_ip or "127.0.0.1", server.listen_port)
        text = render_client_config(
            private_key=client.private_key, addresses=[a for a in (client.ipv4_address, client.ipv6_address) if a],
            dns=client.dns_servers, mtu=server.mtu, server_public_key=server.public_key,
            preshared_key=client.preshared_key, endpoint=endpoint, allowed_ips=client.allowed_ips,
            persistent_keepalive=client.persistent_keepalive or None)
        return client, text

    async def expire_clients(self) -> int:
        """Expired clients leave their nodes (the scheduler calls this; expiry is also checked at render)."""
        now = utcnow()
        async with self._sessions() as s:
            rows = (await s.execute(
                select(WireguardClient.id, WireguardServer.node_uuid).join(WireguardServer)
                .where(WireguardClient.status == "active", WireguardClient.expires_at.is_not(None),
                       WireguardClient.expires_at <= now))).all()
            if not rows:
                return 0
            await s.execute(update(WireguardClient).where(WireguardClient.id.in_([r[0] for r in rows]))
                            .values(status="disabled"))
            for node_uuid in {r[1] for r in rows}:
                await self._bump(s, node_uuid)
            await s.commit()
        self._hub.mark_dirty({r[1] for r in rows})
        return len(rows)

    @staticmethod
    async def _bump(s: AsyncSession, node_uuid: str) -> None:
        await s.execute(update(Node).where(Node.uuid == node_uuid).values(desired_revision=Node.desired_revision + 1))
