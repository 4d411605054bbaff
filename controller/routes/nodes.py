"""Nodes: lifecycle, metrics, node info and TCP ping from the node."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, Page, errors, page_of, uuid_or_404, uuid_path
from controller.errors import BadRequest
from controller.models import utcnow
from controller.schemas.nodes import (CREATION_THROTTLED, MetricsQuery, NodeCreate, NodeInfo, NodeMetrics, NodeOut, NodeQuery,
                                      NodeUpdate, TcpingQuery, TcpingResult)
from controller.serializers import iso, node_to_dict
from controller.services.telemetry import metrics_history, sample_to_dict
from protos import agent_pb2

router = APIRouter(tags=["nodes"])

NodeId = Annotated[str, uuid_path("the node's UUID")]
#: seconds the controller waits for a node to answer a command
COMMAND_TIMEOUT = 10.0


def node_id(raw: str) -> str:
    """A node id from a path: a normalised UUID, or the route's 404 (a malformed id names no node)."""
    return uuid_or_404(raw, "node not found (node ids are UUIDs): ")


@router.get("/api/v1/nodes", dependencies=[requires(P.NODES_VIEW)], response_model=Page[NodeOut], summary="List nodes")
async def list_nodes(q: Annotated[NodeQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Nodes, newest first. `status` includes deleted nodes when it is `deleted`; otherwise they show only
    with `include_deleted=true`."""
    rows, total = await ctl.nodes.list(status=q.status, region=q.region, online=q.online, search=q.search,
                                       include_deleted=q.include_deleted, page=q.page, size=q.size)
    return page_of([node_to_dict(n) for n in rows], total, q)


@router.post("/api/v1/nodes", dependencies=[requires(P.NODES_EDIT)], status_code=202, response_model=NodeOut, responses={**errors(409, 429), 429: {**errors(429)[429], **CREATION_THROTTLED}}, summary="Create a node")
async def create_node(body: NodeCreate, request: Request, ctl: Ctl) -> Any:
    """Create a node; returns at once with status `pending`, progress shows in GET and on /api/v1/events.

    `core` is the node's proxy core: `xray` (default, v2ray.core) serves VMess and VLESS+REALITY+XTLS-Vision,
    `v2ray` VMess only; both add VMess and VLESS over WebSocket+TLS where v2ray.tls is configured. Each node
    gets its own REALITY key pair and short id (the public key and short ids show in its JSON; the private key
    never leaves the controller except to the node). `reality` sets the node's own target site and server
    names (xray only); a private key is never accepted. The inbounds follow the core: they cannot be given.

    A region holds at most `nodes.max_per_region` live nodes (409 beyond) and gets at most
    `nodes.creations_per_minute` new nodes a minute (429 with `Retry-After` beyond). 422: unknown region, bad
    name, unknown core, REALITY on a v2ray node, a dest that is not host:port or does not serve the server
    names, a short id that is not hex, a REALITY key or v2ray_inbounds given; details name the field."""
    node, _ = await ctl.nodes.create(body)
    request.state.created_id = node.uuid
    return node_to_dict(node)


@router.get("/api/v1/nodes/{id}", dependencies=[requires(P.NODES_VIEW)], response_model=NodeOut, responses=errors(404), summary="Get a node")
async def get_node(id: NodeId, ctl: Ctl) -> dict[str, Any]:
    """One node, including deleted ones."""
    return node_to_dict(await ctl.nodes.get(node_id(id)))


@router.patch("/api/v1/nodes/{id}", dependencies=[requires(P.NODES_EDIT)], response_model=NodeOut, responses=errors(404), summary="Update a node")
async def update_node(id: NodeId, body: NodeUpdate, ctl: Ctl) -> dict[str, Any]:
    """Rename a node, override its agent settings, switch its core or change its REALITY settings. Every change
    but the name is pushed to the agent as a new desired revision; a new core or REALITY setting is one
    restart of the node's proxy core (rolled back if the new config fails its test). Subscribers' apps pick up
    the new profile at their next subscription refresh. 422: unknown core, REALITY on a v2ray node, a dest that
    is not host:port, a short id that is not hex, a REALITY key or v2ray_inbounds given (named in details)."""
    return node_to_dict(await ctl.nodes.update(node_id(id), body))


@router.delete("/api/v1/nodes/{id}", dependencies=[requires(P.NODES_EDIT)], status_code=202, response_model=NodeOut, responses=errors(404),
               summary="Delete a node")
async def delete_node(id: NodeId, ctl: Ctl) -> dict[str, Any]:
    """Delete a node: terminates its machine asynchronously (status `deleting`, then `deleted`). 404: unknown
    or already deleted."""
    return node_to_dict(await ctl.nodes.delete(node_id(id)))


def _action(name: str) -> None:
    """POST /api/v1/nodes/{id}/<name>: start, stop or reboot the node's machine."""

    async def handler(id: NodeId, ctl: Ctl) -> dict[str, Any]:
        return node_to_dict(await getattr(ctl.nodes, name)(node_id(id)))

    handler.__name__ = f"{name}_node"
    handler.__doc__ = (f"{name.capitalize()} a node's machine (asynchronous; progress in GET and "
                       f"/api/v1/events). 409: the node's status does not allow it.")
    router.add_api_route(f"/api/v1/nodes/{{id}}/{name}", handler, methods=["POST"], status_code=202, dependencies=[requires(P.NODES_EDIT)],
                         response_model=NodeOut, responses=errors(404, 409), summary=f"{name.capitalize()} a node")


for _name in ("start", "stop", "reboot"):
    _action(_name)


@router.get("/api/v1/nodes/{id}/metrics", dependencies=[requires(P.NODES_VIEW)], response_model=NodeMetrics, responses=errors(404),
            summary="Node metrics")
async def node_metrics(id: NodeId, q: Annotated[MetricsQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Current machine metrics and their history in rollup buckets (at most 2,000 points a query). 422: a
    time outside 1970-9999, end before start, an interval that is not a multiple of 60."""
    nid = node_id(id)
    node = await ctl.nodes.get(nid)
    end = q.end_time or utcnow()
    # end_time is at least 1970-01-01 (MetricsQuery), so the default start never leaves the calendar
    start = q.start_time or end - dt.timedelta(hours=1)
    async with ctl.sessions() as s:
        history = await metrics_history(s, nid, start, end, q.interval)
    latest = ctl.ingest.latest.get(nid)
    return {"node_id": node.uuid, "current": sample_to_dict(latest) if latest is not None else None,
            "start_time": iso(start), "end_time": iso(end), "interval": q.interval, "history": history}


@router.get("/api/v1/nodes/{id}/info", dependencies=[requires(P.NODES_VIEW)], response_model=NodeInfo, responses=errors(404, 503, 504),
            summary="Node info")
async def node_info(id: NodeId, ctl: Ctl) -> dict[str, Any]:
    """System information measured on the node now (the fields of NodePass's /info). 503: the node's agent is
    not connected; 504: it did not answer in time."""
    nid = node_id(id)
    await ctl.nodes.get(nid, include_deleted=False)
    result = await ctl.hub.call(nid, agent_pb2.Command(info=agent_pb2.InfoRequest()), timeout=COMMAND_TIMEOUT)
    if result.error:
        raise BadRequest(f"node could not read its info: {result.error}")
    i = result.info
    return {name: getattr(i, name) for name in NodeInfo.model_fields}


@router.get("/api/v1/nodes/{id}/tcping", dependencies=[requires(P.NODES_EDIT)], response_model=TcpingResult, responses=errors(404, 503, 504),
            summary="TCP ping from the node")
async def node_tcping(id: NodeId, q: Annotated[TcpingQuery, Query()], ctl: Ctl) -> dict[str, Any]:
    """Open a TCP connection from the node to `target` (NodePass's /tcping answer shape). 503: the node's agent
    is not connected; 504: it did not answer in time."""
    nid = node_id(id)
    await ctl.nodes.get(nid, include_deleted=False)
    result = await ctl.hub.call(nid, agent_pb2.Command(tcping=agent_pb2.TcpingRequest(target=q.target)),
                                timeout=COMMAND_TIMEOUT)
    if result.error:
        raise BadRequest(f"node could not run tcping: {result.error}")
    t = result.tcping
    return {"target": t.target, "connected": t.connected, "latency": t.latency_ms, "error": t.error or None}
