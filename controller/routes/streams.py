"""Live streams (Server-Sent Events): fleet events and a node's logs.

Each reader has its own bounded queue on the event bus, so a slow reader loses events (counted and told to
it in a ``dropped`` field) instead of slowing the controller. On shutdown every stream gets a ``shutdown``
event and ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json as jsonlib
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Query
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, errors
from controller.events import Event, Subscription
from controller.routes.nodes import NodeId, node_id
from controller.schemas.nodes import EVENT_STREAM, EventsQuery, LogsQuery, NodeLogs
from controller.serializers import node_to_dict
from controller.services.logs import level_value

PING_SECONDS = 15
#: the nodes an `initial` event lists at most (every node of a real fleet)
INITIAL_NODES = 100_000

router = APIRouter()


def _sse(event: Event, sub: Subscription, name: str) -> dict[str, Any]:
    data = {"type": event.type, **event.data, "time": _now_iso()}
    if sub.dropped:
        data["dropped"] = sub.dropped
    return {"event": name, "data": jsonlib.dumps(data)}


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


async def _stream(request: Request, sub: Subscription, initial: list[dict[str, Any]], name: str) -> AsyncIterator[dict]:
    bus = request.app.state.ctl.bus
    try:
        for item in initial:
            yield item
        while True:
            try:
                event = await asyncio.wait_for(sub.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            yield _sse(event, sub, name)
            if event.type == "shutdown":
                return
    finally:
        bus.unsubscribe(sub)


@router.get("/api/v1/events", dependencies=[requires(P.LOGS_VIEW)], response_class=EventSourceResponse, tags=["events"],
            responses={200: {"description": "first an `initial` event listing every node, then one event per "
                                            "change", "content": EVENT_STREAM}},
            summary="Live fleet events (SSE)")
async def events(request: Request, q: Annotated[EventsQuery, Query()], ctl: Ctl) -> Response:
    """Fleet events as Server-Sent Events: `event: node`, data.type one of initial, create, update, delete,
    shutdown, log (seed 003's types), and with `metrics=true` metrics (each node's newest sample)."""
    only, with_logs, with_metrics = q.node_id, q.logs, q.metrics

    def accepts(e: Event) -> bool:
        if e.type == "shutdown":
            return True
        if (e.type == "log" and not with_logs) or (e.type == "metrics" and not with_metrics):
            return False
        return only is None or e.node_id == only

    sub = ctl.bus.subscribe(accepts)
    rows, _ = await ctl.nodes.list(size=INITIAL_NODES)
    nodes = [node_to_dict(n) for n in rows if only is None or n.uuid == only]
    initial = [{"event": "node", "data": jsonlib.dumps({"type": "initial", "nodes": nodes, "time": _now_iso()})}]
    if with_metrics:
        ids = {n["id"] for n in nodes}
        initial += [{"event": "node", "data": jsonlib.dumps({"type": "metrics", "node_id": node, "metrics": m})}
                    for node, m in list(ctl.ingest.now.items()) if node in ids]
    return EventSourceResponse(_stream(request, sub, initial, "node"), ping=PING_SECONDS)


@router.get("/api/v1/nodes/{id}/logs", dependencies=[requires(P.LOGS_VIEW)], response_model=NodeLogs, tags=["logs"], responses={
    **errors(404), 200: {"description": "the recent lines (JSON), or with `follow=true` a stream of "
                                        "`event: log` (SSE), the recent lines first",
                         "content": EVENT_STREAM}}, summary="Node logs")
async def node_logs(id: NodeId, request: Request, q: Annotated[LogsQuery, Query()], ctl: Ctl) -> Any:
    """A node's recent log lines; with `follow=true` a live SSE stream (`event: log`)."""
    nid = node_id(id)
    await ctl.nodes.get(nid)
    recent = ctl.logs.query(nid, level=q.level, search=q.search, since=q.since, limit=q.limit)
    if not q.follow:
        return {"node_id": nid, "lines": [r.to_dict() for r in recent],
                "dropped_by_agent": ctl.logs.agent_dropped.get(nid, 0)}
    min_level, search = level_value(q.level), q.search

    def accepts(e: Event) -> bool:
        if e.type == "shutdown":
            return True
        if e.type != "log" or e.node_id != nid:
            return False
        line = e.data["log"]
        return level_value(line["level"]) >= min_level and (not search or search.lower() in line["message"].lower())

    sub = ctl.bus.subscribe(accepts)
    initial = [{"event": "log", "data": jsonlib.dumps({"type": "log", "log": r.to_dict()})} for r in recent]
    return EventSourceResponse(_stream(request, sub, initial, "log"), ping=PING_SECONDS)
