"""WireGuard servers and clients (seed 001's shapes): interfaces on nodes and their peers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from controller.access import Access, requires
from controller.permissions import Permission as P
from controller.api import STATUS_DESCRIPTIONS, Ctl, IntId, Page, errors, page_of
from controller.models import WireguardClient, WireguardServer
from controller.schemas.wireguard import (ClientBody, ClientQuery, ClientUpdate, ClientWithConfig, ClientOut,
                                          ServerBody, ServerListed, ServerOut, ServerQuery, ServerStatusOut,
                                          ServerUpdate)
from controller.serializers import iso
from controller.wireguard_config import config_filename, qr_code_data_url

router = APIRouter(tags=["wireguard"])

_NO_CONTENT: dict[int | str, dict[str, Any]] = {204: {"description": "done; no body"}}
# a text/plain route: its error responses are spelled out, else FastAPI would list them as text/plain too
_CONF: dict[int | str, dict[str, Any]] = {
    200: {"description": "the wg-quick .conf as an attachment",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    404: {"description": STATUS_DESCRIPTIONS[404],
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}},
}


def server_to_dict(srv: WireguardServer, clients_count: int | None = None) -> dict[str, Any]:
    data = {
        "id": srv.id, "node_id": srv.node_uuid, "name": srv.name, "interface": srv.interface,
        "listen_port": srv.listen_port, "ipv4_address": srv.ipv4_address, "ipv6_address": srv.ipv6_address,
        "public_key": srv.public_key, "status": srv.status, "auto_start": srv.auto_start, "nat": srv.nat,
        "peer_to_peer": srv.peer_to_peer,
        "endpoint_host": srv.endpoint_host, "description": srv.description,
        "created_at": iso(srv.created_at), "updated_at": iso(srv.updated_at),
        "config": {"dns_servers": srv.dns_servers, "mtu": srv.mtu, "persistent_keepalive": srv.persistent_keepalive,
                   "allowed_ips": srv.allowed_ips},
    }
    if clients_count is not None:
        data["clients_count"] = clients_count
    return data


#: reading peers: operators see every one, a user account the ones it owns
PeerViewer = Annotated[Access, requires(P.WIREGUARD_VIEW, owned=True)]

def client_to_dict(c: WireguardClient) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "server_id": c.server_id, "ipv4_address": c.ipv4_address,
        "ipv6_address": c.ipv6_address, "public_key": c.public_key, "private_key": c.private_key,
        "preshared_key": c.preshared_key, "status": c.status, "expires_at": iso(c.expires_at),
        "last_handshake": iso(c.last_handshake_at), "bytes_received": c.bytes_received, "bytes_sent": c.bytes_sent,
        "allowed_ips": c.allowed_ips, "dns_servers": c.dns_servers, "persistent_keepalive": c.persistent_keepalive,
        "description": c.description, "owner_id": c.owner_id, "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    }


def _with_config(client: WireguardClient, text: str) -> dict[str, Any]:
    return {**client_to_dict(client), "config": text, "qr_code": qr_code_data_url(text)}


# -- servers -------------------------------------------------------------------------------------------------

@router.get("/api/v1/wireguard/servers", dependencies=[requires(P.WIREGUARD_VIEW)], response_model=Page[ServerListed], summary="List WireGuard servers")
async def list_servers(q: Annotated[ServerQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """WireGuard servers, with their number of clients."""
    rows, total = await ctl.wireguard.list_servers(
        node_id=str(q.node_id) if q.node_id else None, status=q.status, search=q.search, page=q.page, size=q.size)
    return page_of([server_to_dict(s, n) for s, n in rows], total, q)


@router.post("/api/v1/wireguard/servers", dependencies=[requires(P.WIREGUARD_EDIT)], status_code=201, response_model=ServerListed, responses=errors(409),
             summary="Create a WireGuard server")
async def create_server(body: ServerBody, request: Request, ctl: Ctl) -> dict[str, Any]:
    """Create a WireGuard interface on a node (keys generated); the node applies it within seconds.
    409: the interface, port or subnet is taken on the node; 422: an invalid field, an unknown node, or a
    subnet overlapping the node's own networks (loopback, link-local, its addresses)."""
    server = await ctl.wireguard.create_server(body)
    request.state.created_id = str(server.id)
    return server_to_dict(server, 0)


@router.get("/api/v1/wireguard/servers/{id}", dependencies=[requires(P.WIREGUARD_VIEW)], response_model=ServerOut, responses=errors(404),
            summary="Get a WireGuard server")
async def get_server(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """One WireGuard server."""
    return server_to_dict(await ctl.wireguard.get_server(id))


@router.put("/api/v1/wireguard/servers/{id}", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ServerOut, responses=errors(404, 409),
            summary="Update a WireGuard server")
async def update_server(id: IntId, body: ServerUpdate, ctl: Ctl) -> dict[str, Any]:
    """Change a WireGuard server (the subnet only while it has no clients: else 409)."""
    return server_to_dict(await ctl.wireguard.update_server(id, body))


@router.delete("/api/v1/wireguard/servers/{id}", dependencies=[requires(P.WIREGUARD_EDIT)], status_code=204, response_class=Response,
               responses={**_NO_CONTENT, **errors(404)}, summary="Delete a WireGuard server")
async def delete_server(id: IntId, ctl: Ctl) -> Response:
    """Delete a WireGuard server and its clients (the interface leaves the node)."""
    await ctl.wireguard.delete_server(id)
    return Response(status_code=204)


@router.post("/api/v1/wireguard/servers/{id}/start", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ServerOut, responses=errors(404),
             summary="Start a WireGuard server")
async def start_server(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """Set a WireGuard server running (the node adds the interface)."""
    return server_to_dict(await ctl.wireguard.set_server_status(id, "running"))


@router.post("/api/v1/wireguard/servers/{id}/stop", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ServerOut, responses=errors(404),
             summary="Stop a WireGuard server")
async def stop_server(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """Set a WireGuard server stopped (the node removes the interface)."""
    return server_to_dict(await ctl.wireguard.set_server_status(id, "stopped"))


@router.get("/api/v1/wireguard/servers/{id}/status", dependencies=[requires(P.WIREGUARD_VIEW)], response_model=ServerStatusOut, responses=errors(404),
            summary="WireGuard server status")
async def server_status(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """Peers with their latest handshake and transfer, and the interface's totals, as the node reported them."""
    server = await ctl.wireguard.get_server(id)
    clients = await ctl.wireguard.server_clients(server.id)
    node = await ctl.nodes.get(server.node_uuid)
    component = next((c for c in node.component_status or [] if c["name"] == "wireguard"), None)
    return {
        "id": server.id, "name": server.name, "status": server.status, "node_id": server.node_uuid,
        "node_online": node.online, "applied": node.applied_revision >= node.desired_revision,
        "component": component,
        "clients": [{"id": c.id, "name": c.name, "public_key": c.public_key,
                     "allowed_ips": ", ".join(a for a in (c.ipv4_address, c.ipv6_address) if a),
                     "status": c.status, "latest_handshake": iso(c.last_handshake_at),
                     "transfer_rx": c.bytes_received, "transfer_tx": c.bytes_sent} for c in clients],
        "interface_stats": {"rx_bytes": sum(c.bytes_received for c in clients),
                            "tx_bytes": sum(c.bytes_sent for c in clients)},
    }


# -- clients -------------------------------------------------------------------------------------------------

@router.get("/api/v1/wireguard/clients", response_model=Page[ClientOut], summary="List WireGuard clients")
async def list_clients(q: Annotated[ClientQuery, Query()], ctl: Ctl, access: PeerViewer) -> dict[str, Any]:
    """WireGuard clients (a user account: the ones it owns)."""
    rows, total = await ctl.wireguard.list_clients(server_id=q.server_id, status=q.status, search=q.search,
                                                   page=q.page, size=q.size, owner_id=access.owner_filter(q.owner_id))
    return page_of([client_to_dict(c) for c in rows], total, q)


@router.post("/api/v1/wireguard/clients", dependencies=[requires(P.WIREGUARD_EDIT)], status_code=201, response_model=ClientWithConfig, responses=errors(409),
             summary="Create a WireGuard client")
async def create_client(body: ClientBody, request: Request, ctl: Ctl) -> dict[str, Any]:
    """Add a peer: addresses auto-assigned (or given and checked), keys generated (or only its public key).
    Answers the client with its `config` text and `qr_code` PNG data URL. 409: the address or public key is
    taken; 422: an invalid field, an unknown server, an address outside the subnet, a full subnet, a bad key."""
    client = await ctl.wireguard.create_client(body)
    request.state.created_id = str(client.id)
    _, text = await ctl.wireguard.client_config(client.id)
    return _with_config(client, text)


@router.get("/api/v1/wireguard/clients/{id}", response_model=ClientWithConfig, responses=errors(404),
            summary="Get a WireGuard client")
async def get_client(id: IntId, ctl: Ctl, access: PeerViewer) -> dict[str, Any]:
    """One WireGuard client, with its config and QR code (a user account: only one it owns)."""
    client, text = await ctl.wireguard.client_config(id, access.owner_id)
    return _with_config(client, text)


@router.put("/api/v1/wireguard/clients/{id}", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ClientOut, responses=errors(404, 409),
            summary="Update a WireGuard client")
async def update_client(id: IntId, body: ClientUpdate, ctl: Ctl) -> dict[str, Any]:
    """Change a WireGuard client (addresses are checked; status active/disabled)."""
    return client_to_dict(await ctl.wireguard.update_client(id, body))


@router.delete("/api/v1/wireguard/clients/{id}", dependencies=[requires(P.WIREGUARD_EDIT)], status_code=204, response_class=Response,
               responses={**_NO_CONTENT, **errors(404)}, summary="Delete a WireGuard client")
async def delete_client(id: IntId, ctl: Ctl) -> Response:
    """Remove a peer from its server (only that peer is cut)."""
    await ctl.wireguard.delete_client(id)
    return Response(status_code=204)


@router.post("/api/v1/wireguard/clients/{id}/enable", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ClientOut, responses=errors(404),
             summary="Enable a WireGuard client")
async def enable_client(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """Enable a WireGuard client (other peers are untouched)."""
    return client_to_dict(await ctl.wireguard.update_client(id, ClientUpdate(status="active")))


@router.post("/api/v1/wireguard/clients/{id}/disable", dependencies=[requires(P.WIREGUARD_EDIT)], response_model=ClientOut, responses=errors(404),
             summary="Disable a WireGuard client")
async def disable_client(id: IntId, ctl: Ctl) -> dict[str, Any]:
    """Disable a WireGuard client (other peers are untouched)."""
    return client_to_dict(await ctl.wireguard.update_client(id, ClientUpdate(status="disabled")))


@router.get("/api/v1/wireguard/clients/{id}/config", response_class=PlainTextResponse,
            responses=_CONF, summary="Download a WireGuard client config")
async def client_config_file(id: IntId, ctl: Ctl, access: PeerViewer) -> PlainTextResponse:
    """The client's wg-quick `.conf`, as a download."""
    client, text = await ctl.wireguard.client_config(id, access.owner_id)
    return PlainTextResponse(text, headers={
        "Content-Disposition": f'attachment; filename="{config_filename(client.name)}"'})
