"""WireGuard servers (interfaces on nodes) and their clients (peers): rules, addresses, keys, desired state.

Every change that affects a node bumps that node's desired revision and pushes it; the agent applies peer
changes incrementally, so other peers keep their sessions.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.db import fetch_page
from controller.errors import Conflict, NotFound, ValidationFailed
from controller.hub.hub import Hub
from controller.ipam import allocate_address, check_address, check_no_overlap, host_cidr
from controller.models import Node, WireguardClient, WireguardServer, utcnow
from controller.wireguard_config import format_endpoint, render_client_config
from controller.wireguard_keys import generate_keypair, generate_preshared_key, public_key_of, validate_key

CLIENT_STATUSES = ("active", "disabled")
SERVER_STATUSES = ("running", "stopped")


def _network(address: str | None) -> str | None:
    return str(ipaddress.ip_interface(address).network) if address else None


def _host(address: str | None) -> str | None:
    return str(ipaddress.ip_interface(address).ip) if address else None


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

    async def create_server(self, values: dict[str, Any]) -> WireguardServer:
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == values["node_id"], Node.is_deleted.is_(False)))
            if node is None:
                raise ValidationFailed(f"node {values['node_id']} not found", {"node_id": "unknown node"})
            if not values.get("ipv4_address") and not values.get("ipv6_address"):
                raise ValidationFailed("a server needs ipv4_address and/or ipv6_address",
                                       {"ipv4_address": "required unless ipv6_address is given"})
            await self._check_unique_on_node(s, node.uuid, values, exclude_id=None)
            private_key, public_key = generate_keypair()
            server = WireguardServer(
                node_uuid=node.uuid, name=values["name"], interface=values["interface"],
                listen_port=values["listen_port"], ipv4_address=values.get("ipv4_address"),
                ipv6_address=values.get("ipv6_address"), private_key=private_key, public_key=public_key,
                dns_servers=values.get("dns_servers") or [], mtu=values.get("mtu") or 1420,
                persistent_keepalive=values.get("persistent_keepalive", 25),
                allowed_ips=values.get("allowed_ips") or ["0.0.0.0/0", "::/0"], nat=values.get("nat", True),
                peer_to_peer=values.get("peer_to_peer", False),
                endpoint_host=values.get("endpoint_host"), auto_start=values.get("auto_start", True),
                status="running" if values.get("auto_start", True) else "stopped",
                description=values.get("description") or "",
            )
            s.add(server)
            await self._bump(s, node.uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return server

    async def update_server(self, server_id: int, values: dict[str, Any]) -> WireguardServer:
        async with self._sessions() as s:
            server = await s.get(WireguardServer, server_id)
            if server is None:
                raise NotFound(f"WireGuard server {server_id} not found")
            merged = {"interface": server.interface, "listen_port": server.listen_port,
                      "ipv4_address": server.ipv4_address, "ipv6_address": server.ipv6_address, **values}
            if ("ipv4_address" in values and _network(values["ipv4_address"]) != _network(server.ipv4_address)) or \
               ("ipv6_address" in values and _network(values["ipv6_address"]) != _network(server.ipv6_address)):
                if await s.scalar(select(func.count()).where(WireguardClient.server_id == server_id)):
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

    async def set_server_status(self, server_id: int, status: str) -> WireguardServer:
        return await self.update_server(server_id, {"status": status})

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
        for family in ("ipv4_address", "ipv6_address"):
            if values.get(family):
                existing = {o.name: _network(getattr(o, family)) for o in others if getattr(o, family)}
                check_no_overlap(_network(values[family]), existing, family)

    # -- clients --------------------------------------------------------------------------------------------
    async def list_clients(self, *, server_id: int | None, status: str | None, search: str | None, page: int,
                           size: int) -> tuple[list[WireguardClient], int]:
        query = select(WireguardClient)
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

    async def get_client(self, client_id: int) -> tuple[WireguardClient, WireguardServer, Node]:
        async with self._sessions() as s:
            client = await s.get(WireguardClient, client_id)
            if client is None:
                raise NotFound(f"WireGuard client {client_id} not found")
            server = await s.get(WireguardServer, client.server_id)
            node = await s.scalar(select(Node).where(Node.uuid == server.node_uuid))
        return client, server, node

    async def create_client(self, values: dict[str, Any]) -> WireguardClient:
        async with self._sessions() as s:
            server = await s.get(WireguardServer, values["server_id"])
            if server is None:
                raise ValidationFailed(f"WireGuard server {values['server_id']} not found",
                                       {"server_id": "unknown server"})
            peers = (await s.scalars(select(WireguardClient).where(WireguardClient.server_id == server.id))).all()
            client = WireguardClient(server_id=server.id, name=values["name"],
                                     dns_servers=values.get("dns_servers") or server.dns_servers,
                                     allowed_ips=values.get("allowed_ips") or server.allowed_ips,
                                     persistent_keepalive=values.get("persistent_keepalive",
                                                                     server.persistent_keepalive),
                                     expires_at=values.get("expires_at"), description=values.get("description") or "")
            self._assign_addresses(client, server, peers, values)
            self._assign_keys(client, peers, values)
            s.add(client)
            await self._bump(s, server.node_uuid)
            await s.commit()
        self._hub.mark_dirty([server.node_uuid])
        return client

    @staticmethod
    def _assign_addresses(client: WireguardClient, server: WireguardServer, peers: list[WireguardClient],
                          values: dict[str, Any]) -> None:
        for family in ("ipv4_address", "ipv6_address"):
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

    async def update_client(self, client_id: int, values: dict[str, Any]) -> WireguardClient:
        async with self._sessions() as s:
            client = await s.get(WireguardClient, client_id)
            if client is None:
                raise NotFound(f"WireGuard client {client_id} not found")
            server = await s.get(WireguardServer, client.server_id)
            if "ipv4_address" in values or "ipv6_address" in values:
                peers = (await s.scalars(select(WireguardClient).where(WireguardClient.server_id == server.id,
                                                                       WireguardClient.id != client.id))).all()
                self._assign_addresses(client, server, list(peers),
                                       {k: v for k, v in values.items() if k in ("ipv4_address", "ipv6_address")}
                                       | {"auto_assign_ip": False})
            for key in ("name", "dns_servers", "allowed_ips", "persistent_keepalive", "expires_at", "description",
                        "status"):
                if key in values:
                    setattr(client, key, values[key])
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

    async def client_config(self, client_id: int) -> tuple[WireguardClient, str]:
        client, server, node = await self.get_client(client_id)
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
