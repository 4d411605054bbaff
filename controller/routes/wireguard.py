"""WireGuard servers and clients (seed 001's shapes): interfaces on nodes and their peers."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from controller.errors import ValidationFailed
from controller.http import json, page_params, paginated, path_int, query_int, read_body
from controller.models import WireguardClient, WireguardServer
from controller.serializers import iso
from controller.services.wireguard import CLIENT_STATUSES, SERVER_STATUSES
from controller.wireguard_config import config_filename, qr_code_data_url

IFACE = r"^[A-Za-z0-9_.-]{1,15}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$"


def _cidr_list(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v, strict=False)))
        except ValueError:
            raise ValueError(f"{v!r} is not a CIDR") from None
    return out


def _ip_list(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    try:
        return [str(ipaddress.ip_address(v)) for v in values]
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _interface(value: str | None, version: int) -> str | None:
    if value is None:
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an address with a prefix, e.g. 10.8.0.1/24") from None
    if iface.version != version:
        raise ValueError(f"must be an IPv{version} address")
    if iface.network.prefixlen >= (31 if version == 4 else 127):
        raise ValueError("the subnet is too small for clients")
    if iface.ip == iface.network.network_address:
        raise ValueError("use the server's own address in the subnet, e.g. 10.8.0.1/24, not the network address")
    return str(iface)


class ServerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str
    name: str = Field(pattern=NAME)
    interface: str = Field(pattern=IFACE)
    listen_port: int = Field(ge=1, le=65535)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    dns_servers: list[str] = []
    mtu: int = Field(default=1420, ge=1280, le=9000)
    persistent_keepalive: int = Field(default=25, ge=0, le=3600)
    allowed_ips: list[str] | None = None
    nat: bool = True
    #: peers may reach each other through the node (else the egress policy keeps them apart)
    peer_to_peer: bool = False
    endpoint_host: str | None = Field(default=None, max_length=255)
    auto_start: bool = True
    description: str = Field(default="", max_length=1000)

    _v4 = field_validator("ipv4_address")(lambda cls, v: _interface(v, 4))
    _v6 = field_validator("ipv6_address")(lambda cls, v: _interface(v, 6))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))
    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))


class ServerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    interface: str | None = Field(default=None, pattern=IFACE)
    listen_port: int | None = Field(default=None, ge=1, le=65535)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    dns_servers: list[str] | None = None
    mtu: int | None = Field(default=None, ge=1280, le=9000)
    persistent_keepalive: int | None = Field(default=None, ge=0, le=3600)
    allowed_ips: list[str] | None = None
    nat: bool | None = None
    peer_to_peer: bool | None = None
    endpoint_host: str | None = Field(default=None, max_length=255)
    auto_start: bool | None = None
    description: str | None = Field(default=None, max_length=1000)

    _v4 = field_validator("ipv4_address")(lambda cls, v: _interface(v, 4))
    _v6 = field_validator("ipv6_address")(lambda cls, v: _interface(v, 6))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))
    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))


class ClientBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_id: int
    name: str = Field(pattern=NAME)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    auto_assign_ip: bool = True
    public_key: str | None = None
    private_key: str | None = None
    preshared_key: str | None = None
    use_preshared_key: bool = True
    allowed_ips: list[str] | None = None
    dns_servers: list[str] | None = None
    persistent_keepalive: int | None = Field(default=None, ge=0, le=3600)
    expires_at: dt.datetime | None = None
    description: str = Field(default="", max_length=1000)

    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))


class ClientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    allowed_ips: list[str] | None = None
    dns_servers: list[str] | None = None
    persistent_keepalive: int | None = Field(default=None, ge=0, le=3600)
    expires_at: dt.datetime | None = None
    status: str | None = None
    description: str | None = Field(default=None, max_length=1000)

    _allowed = field_validator("allowed_ips")(lambda cls, v: _cidr_list(v))
    _dns = field_validator("dns_servers")(lambda cls, v: _ip_list(v))


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


def client_to_dict(c: WireguardClient) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "server_id": c.server_id, "ipv4_address": c.ipv4_address,
        "ipv6_address": c.ipv6_address, "public_key": c.public_key, "private_key": c.private_key,
        "preshared_key": c.preshared_key, "status": c.status, "expires_at": iso(c.expires_at),
        "last_handshake": iso(c.last_handshake_at), "bytes_received": c.bytes_received, "bytes_sent": c.bytes_sent,
        "allowed_ips": c.allowed_ips, "dns_servers": c.dns_servers, "persistent_keepalive": c.persistent_keepalive,
        "description": c.description, "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
    }


def _id(request: Request, what: str) -> int:
    return path_int(request, "id", f"WireGuard {what} not found: ")


async def _body(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    return (await read_body(request, model)).model_dump(exclude_unset=True)


# -- servers -------------------------------------------------------------------------------------------------

async def list_servers(request: Request):
    """WireGuard servers.
    ---
    summary: List WireGuard servers
    tags: [wireguard]
    parameters:
      - {name: node_id, in: query, schema: {type: string}}
      - {name: status, in: query, schema: {type: string, enum: [running, stopped]}}
      - {name: search, in: query, schema: {type: string}}
      - {name: page, in: query, schema: {type: integer}}
      - {name: size, in: query, schema: {type: integer}}
    responses:
      200: {description: "paginated servers"}
    """
    page, size = page_params(request)
    status = request.query_params.get("status") or None
    if status and status not in SERVER_STATUSES:
        raise ValidationFailed("status must be running or stopped", {"status": "unknown status"})
    rows, total = await request.app.state.ctl.wireguard.list_servers(
        node_id=request.query_params.get("node_id") or None, status=status,
        search=request.query_params.get("search") or None, page=page, size=size)
    return json(paginated([server_to_dict(s, n) for s, n in rows], total, page, size))


async def create_server(request: Request):
    """Create a WireGuard interface on a node (keys generated); the node applies it within seconds.
    ---
    summary: Create a WireGuard server
    tags: [wireguard]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/ServerBody'}}}}
    responses:
      201: {description: "the server"}
      422: {description: "invalid field, port or interface taken on the node, overlapping subnet"}
    """
    server = await request.app.state.ctl.wireguard.create_server(await _body(request, ServerBody))
    request.state.created_id = str(server.id)
    return json(server_to_dict(server, 0), status=201)


async def get_server(request: Request):
    """One WireGuard server.
    ---
    summary: Get a WireGuard server
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "the server"}
      404: {description: "unknown server"}
    """
    return json(server_to_dict(await request.app.state.ctl.wireguard.get_server(_id(request, "server"))))


async def update_server(request: Request):
    """Change a WireGuard server (the subnet only while it has no clients).
    ---
    summary: Update a WireGuard server
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/ServerUpdate'}}}}
    responses:
      200: {description: "the server"}
      409: {description: "subnet change with clients"}
      422: {description: "invalid field"}
    """
    server = await request.app.state.ctl.wireguard.update_server(_id(request, "server"),
                                                                 await _body(request, ServerUpdate))
    return json(server_to_dict(server))


async def delete_server(request: Request):
    """Delete a WireGuard server and its clients (the interface leaves the node).
    ---
    summary: Delete a WireGuard server
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      204: {description: "deleted"}
      404: {description: "unknown server"}
    """
    await request.app.state.ctl.wireguard.delete_server(_id(request, "server"))
    return PlainTextResponse("", status_code=204)


def _server_action(status: str):
    async def handler(request: Request):
        server = await request.app.state.ctl.wireguard.set_server_status(_id(request, "server"), status)
        return json(server_to_dict(server))

    handler.__name__ = f"{'start' if status == 'running' else 'stop'}_server"
    handler.__doc__ = f"""Set a WireGuard server {status} (the node adds or removes the interface).
    ---
    summary: {'Start' if status == 'running' else 'Stop'} a WireGuard server
    tags: [wireguard]
    parameters: [{{name: id, in: path, required: true, schema: {{type: integer}}}}]
    responses:
      200: {{description: "the server"}}
      404: {{description: "unknown server"}}
    """
    return handler


async def server_status(request: Request):
    """Peers with their latest handshake and transfer, and the interface's totals, as the node reported them.
    ---
    summary: WireGuard server status
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "{id, name, status, applied, clients: [...], interface_stats}"}
    """
    ctl = request.app.state.ctl
    server = await ctl.wireguard.get_server(_id(request, "server"))
    clients, _ = await ctl.wireguard.list_clients(server_id=server.id, status=None, search=None, page=1, size=100_000)
    node = await ctl.nodes.get(server.node_uuid)
    component = next((c for c in node.component_status or [] if c["name"] == "wireguard"), None)
    return json({
        "id": server.id, "name": server.name, "status": server.status, "node_id": server.node_uuid,
        "node_online": node.online, "applied": node.applied_revision >= node.desired_revision,
        "component": component,
        "clients": [{"id": c.id, "name": c.name, "public_key": c.public_key,
                     "allowed_ips": ", ".join(a for a in (c.ipv4_address, c.ipv6_address) if a),
                     "status": c.status, "latest_handshake": iso(c.last_handshake_at),
                     "transfer_rx": c.bytes_received, "transfer_tx": c.bytes_sent} for c in clients],
        "interface_stats": {"rx_bytes": sum(c.bytes_received for c in clients),
                            "tx_bytes": sum(c.bytes_sent for c in clients)},
    })


# -- clients -------------------------------------------------------------------------------------------------

async def list_clients(request: Request):
    """WireGuard clients.
    ---
    summary: List WireGuard clients
    tags: [wireguard]
    parameters:
      - {name: server_id, in: query, schema: {type: integer}}
      - {name: status, in: query, schema: {type: string, enum: [active, disabled]}}
      - {name: search, in: query, schema: {type: string}}
      - {name: page, in: query, schema: {type: integer}}
      - {name: size, in: query, schema: {type: integer}}
    responses:
      200: {description: "paginated clients"}
    """
    page, size = page_params(request)
    status = request.query_params.get("status") or None
    if status and status not in CLIENT_STATUSES:
        raise ValidationFailed("status must be active or disabled", {"status": "unknown status"})
    server_id = query_int(request, "server_id", 0, 0, 2**31) or None
    rows, total = await request.app.state.ctl.wireguard.list_clients(
        server_id=server_id, status=status, search=request.query_params.get("search") or None, page=page, size=size)
    return json(paginated([client_to_dict(c) for c in rows], total, page, size))


async def create_client(request: Request):
    """Add a peer: addresses auto-assigned (or given and checked), keys generated (or only its public key).
    ---
    summary: Create a WireGuard client
    tags: [wireguard]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/ClientBody'}}}}
    responses:
      201: {description: "the client with `config` text and `qr_code` PNG data URL"}
      422: {description: "invalid field, address taken or outside the subnet, subnet full, bad key"}
    """
    ctl = request.app.state.ctl
    client = await ctl.wireguard.create_client(await _body(request, ClientBody))
    request.state.created_id = str(client.id)
    _, text = await ctl.wireguard.client_config(client.id)
    return json({**client_to_dict(client), "config": text, "qr_code": qr_code_data_url(text)}, status=201)


async def get_client(request: Request):
    """One WireGuard client, with its config and QR code.
    ---
    summary: Get a WireGuard client
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "the client"}
      404: {description: "unknown client"}
    """
    client, text = await request.app.state.ctl.wireguard.client_config(_id(request, "client"))
    return json({**client_to_dict(client), "config": text, "qr_code": qr_code_data_url(text)})


async def update_client(request: Request):
    """Change a WireGuard client (addresses are checked; status active/disabled).
    ---
    summary: Update a WireGuard client
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/ClientUpdate'}}}}
    responses:
      200: {description: "the client"}
      422: {description: "invalid field"}
    """
    values = await _body(request, ClientUpdate)
    if "status" in values and values["status"] not in CLIENT_STATUSES:
        raise ValidationFailed("status must be active or disabled", {"status": "unknown status"})
    client = await request.app.state.ctl.wireguard.update_client(_id(request, "client"), values)
    return json(client_to_dict(client))


async def delete_client(request: Request):
    """Remove a peer from its server (only that peer is cut).
    ---
    summary: Delete a WireGuard client
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      204: {description: "deleted"}
      404: {description: "unknown client"}
    """
    await request.app.state.ctl.wireguard.delete_client(_id(request, "client"))
    return PlainTextResponse("", status_code=204)


def _client_action(status: str):
    async def handler(request: Request):
        client = await request.app.state.ctl.wireguard.update_client(_id(request, "client"), {"status": status})
        return json(client_to_dict(client))

    verb = "enable" if status == "active" else "disable"
    handler.__name__ = f"{verb}_client"
    handler.__doc__ = f"""{verb.capitalize()} a WireGuard client (other peers are untouched).
    ---
    summary: {verb.capitalize()} a WireGuard client
    tags: [wireguard]
    parameters: [{{name: id, in: path, required: true, schema: {{type: integer}}}}]
    responses:
      200: {{description: "the client"}}
      404: {{description: "unknown client"}}
    """
    return handler


async def client_config_file(request: Request):
    """The client's wg-quick `.conf`, as a download.
    ---
    summary: Download a WireGuard client config
    tags: [wireguard]
    parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "text/plain .conf attachment"}
    """
    client, text = await request.app.state.ctl.wireguard.client_config(_id(request, "client"))
    return PlainTextResponse(text, headers={
        "Content-Disposition": f'attachment; filename="{config_filename(client.name)}"'})


routes = [
    Route("/api/v1/wireguard/servers", list_servers, methods=["GET"]),
    Route("/api/v1/wireguard/servers", create_server, methods=["POST"]),
    Route("/api/v1/wireguard/servers/{id}", get_server, methods=["GET"]),
    Route("/api/v1/wireguard/servers/{id}", update_server, methods=["PUT"]),
    Route("/api/v1/wireguard/servers/{id}", delete_server, methods=["DELETE"]),
    Route("/api/v1/wireguard/servers/{id}/start", _server_action("running"), methods=["POST"]),
    Route("/api/v1/wireguard/servers/{id}/stop", _server_action("stopped"), methods=["POST"]),
    Route("/api/v1/wireguard/servers/{id}/status", server_status, methods=["GET"]),
    Route("/api/v1/wireguard/clients", list_clients, methods=["GET"]),
    Route("/api/v1/wireguard/clients", create_client, methods=["POST"]),
    Route("/api/v1/wireguard/clients/{id}", get_client, methods=["GET"]),
    Route("/api/v1/wireguard/clients/{id}", update_client, methods=["PUT"]),
    Route("/api/v1/wireguard/clients/{id}", delete_client, methods=["DELETE"]),
    Route("/api/v1/wireguard/clients/{id}/enable", _client_action("active"), methods=["POST"]),
    Route("/api/v1/wireguard/clients/{id}/disable", _client_action("disabled"), methods=["POST"]),
    Route("/api/v1/wireguard/clients/{id}/config", client_config_file, methods=["GET"]),
]
schemas = [ServerBody, ServerUpdate, ClientBody, ClientUpdate]
