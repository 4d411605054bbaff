"""Nodes: lifecycle, metrics, node info and TCP ping from the node."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.routing import Route

from controller.errors import BadRequest, ValidationFailed
from controller.http import json, page_params, paginated, path_uuid, query_bool, query_int, query_time, read_body
from controller.models import utcnow
from controller.serializers import node_to_dict
from controller.services.desired_state import validate_agent_settings
from controller.services.nodes import STATUSES
from controller.services.telemetry import metrics_history, sample_to_dict
from protos import agent_pb2

_TARGET = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$")


_KEY_REFUSED = ("the node's REALITY key pair is made by the controller and never taken from outside "
                "(the public key shows in the node's JSON)")
_INBOUNDS_REFUSED = ("the inbounds follow the node's core (set core: xray or v2ray); VLESS is never served "
                     "without TLS or REALITY")


def _refuse(message: str):
    def check(value: Any) -> Any:
        raise ValueError(message)
    return check


class RealityInput(BaseModel):
    """A node's own REALITY settings (xray nodes). Omitted fields are kept; a null dest or server_names goes
    back to the region's (aws.regions.<code>.reality_*) or the fleet's (v2ray.reality.*)."""

    model_config = ConfigDict(extra="forbid")
    dest: str | None = Field(default=None, max_length=300, description="the target site, host:port, e.g. "
                             "www.microsoft.com:443; it must serve the server names")
    server_names: list[str] | None = Field(default=None, max_length=16,
                                           description="the TLS server names clients may send (the first is "
                                                       "the one subscriptions carry)")
    short_ids: list[str] | None = Field(default=None, min_length=1, max_length=8,
                                        description="hex, an even number of characters up to 16; the first is "
                                                    "the one subscriptions carry")
    # Never accepted (a clear 422 naming the field); not part of the schema.
    private_key: SkipJsonSchema[Any] = None
    public_key: SkipJsonSchema[Any] = None
    _no_private_key = field_validator("private_key")(_refuse(_KEY_REFUSED))
    _no_public_key = field_validator("public_key")(_refuse(_KEY_REFUSED))


class NodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    core: Literal["xray", "v2ray"] | None = Field(default=None, description="the proxy core; default v2ray.core "
                                                  "(xray)")
    reality: RealityInput | None = None
    v2ray_inbounds: SkipJsonSchema[Any] = None
    _no_inbounds = field_validator("v2ray_inbounds")(_refuse(_INBOUNDS_REFUSED))


class NodeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    agent_settings: dict | None = None
    core: Literal["xray", "v2ray"] | None = Field(default=None, description="switch the proxy core (one restart "
                                                  "of the node's core)")
    reality: RealityInput | None = None
    v2ray_inbounds: SkipJsonSchema[Any] = None
    _no_inbounds = field_validator("v2ray_inbounds")(_refuse(_INBOUNDS_REFUSED))


def _reality_overrides(body: NodeCreate | NodeUpdate) -> dict[str, Any] | None:
    """The REALITY fields the body sent (null ones included: they reset to the default)."""
    if body.reality is None:
        return None
    return body.reality.model_dump(include=body.reality.model_fields_set - {"private_key", "public_key"})


def node_id(request: Request) -> str:
    return path_uuid(request, "id", "node not found (node ids are UUIDs): ")


async def list_nodes(request: Request):
    """Nodes, newest first.
    ---
    summary: List nodes
    tags: [nodes]
    parameters:
      - {name: status, in: query, schema: {type: string, enum: [pending, creating, running, stopping, stopped, starting, deleting, deleted, error]}}
      - {name: region, in: query, schema: {type: string}}
      - {name: online, in: query, schema: {type: boolean}}
      - {name: search, in: query, schema: {type: string}, description: "name, id, IP or instance id contains"}
      - {name: include_deleted, in: query, schema: {type: boolean}}
      - {name: page, in: query, schema: {type: integer, minimum: 1}}
      - {name: size, in: query, schema: {type: integer, minimum: 1, maximum: 500}}
    responses:
      200: {description: "paginated list of nodes"}
    """
    page, size = page_params(request)
    status = request.query_params.get("status") or None
    if status and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", {"status": "unknown status"})
    rows, total = await request.app.state.ctl.nodes.list(
        status=status, region=request.query_params.get("region") or None, online=query_bool(request, "online"),
        search=request.query_params.get("search") or None,
        include_deleted=bool(query_bool(request, "include_deleted")), page=page, size=size)
    return json(paginated([node_to_dict(n) for n in rows], total, page, size))


async def create_node(request: Request):
    """Create a node; returns at once with status `pending`, progress shows in GET and on /api/v1/events.

    `core` is the node's proxy core: `xray` (default, v2ray.core) serves VMess and VLESS+REALITY+XTLS-Vision,
    `v2ray` VMess only; both add VMess and VLESS over WebSocket+TLS where v2ray.tls is configured. Each node
    gets its own REALITY key pair and short id (the public key and short ids show in its JSON; the private key
    never leaves the controller except to the node). `reality` sets the node's own target site and server
    names (xray only); a private key is never accepted. The inbounds follow the core: they cannot be given.
    ---
    summary: Create a node
    tags: [nodes]
    requestBody:
      content:
        application/json:
          schema: {$ref: '#/components/schemas/NodeCreate'}
    responses:
      202: {description: "the node, status pending (with core, v2ray_inbounds and their profiles, reality.public_key and short_ids)"}
      422: {description: "unknown region, bad name, unknown core, REALITY on a v2ray node, a dest that is not host:port or does not serve the server names, a short id that is not hex, a REALITY key or v2ray_inbounds given; details name the field"}
    """
    body = await read_body(request, NodeCreate)
    node, _ = await request.app.state.ctl.nodes.create(body.region, body.name, core=body.core,
                                                      reality_overrides=_reality_overrides(body))
    request.state.created_id = node.uuid
    return json(node_to_dict(node), status=202)


async def get_node(request: Request):
    """One node, including deleted ones.
    ---
    summary: Get a node
    tags: [nodes]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "the node"}
      404: {description: "unknown node"}
    """
    return json(node_to_dict(await request.app.state.ctl.nodes.get(node_id(request))))


async def update_node(request: Request):
    """Rename a node, override its agent settings, switch its core or change its REALITY settings. Every change
    but the name is pushed to the agent as a new desired revision; a new core or REALITY setting is one
    restart of the node's proxy core (rolled back if the new config fails its test). Subscribers' apps pick up
    the new profile at their next subscription refresh.
    ---
    summary: Update a node
    tags: [nodes]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    requestBody:
      content:
        application/json:
          schema: {$ref: '#/components/schemas/NodeUpdate'}
    responses:
      200: {description: "the node"}
      404: {description: "unknown node"}
      422: {description: "invalid field (named in details): unknown core, REALITY on a v2ray node, a dest that is not host:port, a short id that is not hex, a REALITY key or v2ray_inbounds given"}
    """
    ctl = request.app.state.ctl
    nid = node_id(request)
    body = await read_body(request, NodeUpdate)
    node = await ctl.nodes.get(nid, include_deleted=False)
    if body.agent_settings is not None:  # checked before anything changes
        validate_agent_settings(body.agent_settings, "agent_settings")
    overrides = _reality_overrides(body)
    if body.core is not None or overrides:
        node = await ctl.nodes.update_v2ray(nid, body.core, overrides)
    if body.agent_settings is not None:
        node = await ctl.nodes.update_agent_settings(nid, body.agent_settings)
    if body.name is not None:
        node = await ctl.nodes.rename(nid, body.name)
    return json(node_to_dict(node))


async def delete_node(request: Request):
    """Delete a node: terminates its machine asynchronously (status `deleting`, then `deleted`).
    ---
    summary: Delete a node
    tags: [nodes]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      202: {description: "the node, status deleting"}
      404: {description: "unknown or already deleted node"}
    """
    return json(node_to_dict(await request.app.state.ctl.nodes.delete(node_id(request))), status=202)


def _action(name: str):
    async def handler(request: Request):
        node = await getattr(request.app.state.ctl.nodes, name)(node_id(request))
        return json(node_to_dict(node), status=202)

    handler.__name__ = f"{name}_node"
    handler.__doc__ = f"""{name.capitalize()} a node's machine (asynchronous; progress in GET and /api/v1/events).
    ---
    summary: {name.capitalize()} a node
    tags: [nodes]
    parameters: [{{name: id, in: path, required: true, schema: {{type: string, format: uuid}}}}]
    responses:
      202: {{description: "the node"}}
      404: {{description: "unknown node"}}
      409: {{description: "the node's status does not allow it"}}
    """
    return handler


async def node_metrics(request: Request):
    """Current machine metrics and their history in rollup buckets.
    ---
    summary: Node metrics
    tags: [nodes]
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
      - {name: start_time, in: query, schema: {type: string}, description: "ISO 8601 or unix seconds; default 1 hour ago"}
      - {name: end_time, in: query, schema: {type: string}, description: "default now"}
      - {name: interval, in: query, schema: {type: integer, default: 60}, description: "seconds per point, multiple of 60"}
    responses:
      200: {description: "{current, history: [...], interval, start_time, end_time}"}
      422: {description: "bad time range or interval"}
    """
    ctl = request.app.state.ctl
    nid = node_id(request)
    node = await ctl.nodes.get(nid)
    end = query_time(request, "end_time") or utcnow()
    start = query_time(request, "start_time") or end - dt.timedelta(hours=1)
    interval = query_int(request, "interval", 60, 60, 86400 * 31)
    async with ctl.sessions() as s:
        history = await metrics_history(s, nid, start, end, interval)
    latest = ctl.ingest.latest.get(nid)
    return json({
        "node_id": node.uuid,
        "current": sample_to_dict(latest) if latest is not None else None,
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": end.isoformat().replace("+00:00", "Z"),
        "interval": interval,
        "history": history,
    })


async def node_info(request: Request):
    """System information measured on the node now (the fields of NodePass's /info).
    ---
    summary: Node info
    tags: [nodes]
    parameters: [{name: id, in: path, required: true, schema: {type: string, format: uuid}}]
    responses:
      200: {description: "alias, os, arch, cpu, mem_total, mem_used, swap_total, swap_used, netrx, nettx, diskr, diskw, sysup, ver, name, uptime, log, tls, crt, key"}
      503: {description: "the node's agent is not connected"}
      504: {description: "the agent did not answer in time"}
    """
    ctl = request.app.state.ctl
    nid = node_id(request)
    await ctl.nodes.get(nid, include_deleted=False)
    result = await ctl.hub.call(nid, agent_pb2.Command(info=agent_pb2.InfoRequest()), timeout=10.0)
    if result.error:
        raise BadRequest(f"node could not read its info: {result.error}")
    i = result.info
    return json({"alias": i.alias, "os": i.os, "arch": i.arch, "cpu": i.cpu, "mem_total": i.mem_total,
                 "mem_used": i.mem_used, "swap_total": i.swap_total, "swap_used": i.swap_used, "netrx": i.netrx,
                 "nettx": i.nettx, "diskr": i.diskr, "diskw": i.diskw, "sysup": i.sysup, "ver": i.ver,
                 "name": i.name, "uptime": i.uptime, "log": i.log, "tls": i.tls, "crt": i.crt, "key": i.key})


async def node_tcping(request: Request):
    """Open a TCP connection from the node to `target` (NodePass's /tcping answer shape).
    ---
    summary: TCP ping from the node
    tags: [nodes]
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
      - {name: target, in: query, required: true, schema: {type: string}, description: "host:port or [ipv6]:port"}
    responses:
      200: {description: "{target, connected, latency, error}"}
      422: {description: "missing or malformed target"}
      503: {description: "the node's agent is not connected"}
    """
    ctl = request.app.state.ctl
    nid = node_id(request)
    target = request.query_params.get("target", "")
    m = _TARGET.match(target)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise ValidationFailed("target must be host:port (IPv6 as [addr]:port)", {"target": "bad target"})
    await ctl.nodes.get(nid, include_deleted=False)
    result = await ctl.hub.call(nid, agent_pb2.Command(tcping=agent_pb2.TcpingRequest(target=target)), timeout=10.0)
    if result.error:
        raise BadRequest(f"node could not run tcping: {result.error}")
    t = result.tcping
    return json({"target": t.target, "connected": t.connected, "latency": t.latency_ms, "error": t.error or None})


routes = [
    Route("/api/v1/nodes", list_nodes, methods=["GET"]),
    Route("/api/v1/nodes", create_node, methods=["POST"]),
    Route("/api/v1/nodes/{id}", get_node, methods=["GET"]),
    Route("/api/v1/nodes/{id}", update_node, methods=["PATCH"]),
    Route("/api/v1/nodes/{id}", delete_node, methods=["DELETE"]),
    Route("/api/v1/nodes/{id}/start", _action("start"), methods=["POST"]),
    Route("/api/v1/nodes/{id}/stop", _action("stop"), methods=["POST"]),
    Route("/api/v1/nodes/{id}/reboot", _action("reboot"), methods=["POST"]),
    Route("/api/v1/nodes/{id}/metrics", node_metrics, methods=["GET"]),
    Route("/api/v1/nodes/{id}/info", node_info, methods=["GET"]),
    Route("/api/v1/nodes/{id}/tcping", node_tcping, methods=["GET"]),
]
schemas = [NodeCreate, NodeUpdate, RealityInput]
