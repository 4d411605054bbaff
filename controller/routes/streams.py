"""Live streams (Server-Sent Events): fleet events and a node's logs.

Each reader has its own bounded queue on the event bus, so a slow reader loses events (counted and told to
it in a ``dropped`` field) instead of slowing the controller. On shutdown every stream gets a ``shutdown``
event and ends.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any, AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.routing import Route

from controller.events import Event, Subscription
from controller.http import json, query_bool, query_int, query_time
from controller.routes.nodes import node_id
from controller.serializers import node_to_dict
from controller.services.logs import LEVELS, level_value
from controller.errors import ValidationFailed

PING_SECONDS = 15


def _sse(event: Event, sub: Subscription, name: str) -> dict[str, Any]:
    data = {"type": event.type, **event.data, "time": _now_iso()}
    if sub.dropped:
        data["dropped"] = sub.dropped
    return {"event": name, "data": jsonlib.dumps(data)}


def _now_iso() -> str:
    import datetime as dt

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


async def events(request: Request):
    """Fleet events as Server-Sent Events: `event: node`, data.type one of initial, create, update, delete,
    shutdown, log (seed 003's types).
    ---
    summary: Live fleet events (SSE)
    tags: [events]
    parameters:
      - {name: node_id, in: query, schema: {type: string}, description: "only this node's events"}
      - {name: logs, in: query, schema: {type: boolean, default: false}, description: "include log events"}
    responses:
      200: {description: "text/event-stream; first an `initial` event listing every node"}
    """
    ctl = request.app.state.ctl
    only = request.query_params.get("node_id") or None
    with_logs = bool(query_bool(request, "logs"))

    def accepts(e: Event) -> bool:
        if e.type == "shutdown":
            return True
        if e.type == "log" and not with_logs:
            return False
        return only is None or e.node_id == only

    sub = ctl.bus.subscribe(accepts)
    rows, _ = await ctl.nodes.list(size=100_000)
    nodes = [node_to_dict(n) for n in rows if only is None or n.uuid == only]
    initial = [{"event": "node", "data": jsonlib.dumps({"type": "initial", "nodes": nodes, "time": _now_iso()})}]
    return EventSourceResponse(_stream(request, sub, initial, "node"), ping=PING_SECONDS)


async def node_logs(request: Request):
    """A node's recent log lines; with `follow=true` a live SSE stream (`event: log`).
    ---
    summary: Node logs
    tags: [logs]
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
      - {name: level, in: query, schema: {type: string, enum: [debug, info, warning, error, critical]}, description: "minimum level"}
      - {name: search, in: query, schema: {type: string}, description: "case-insensitive substring"}
      - {name: since, in: query, schema: {type: string}, description: "ISO 8601 time or unix seconds"}
      - {name: limit, in: query, schema: {type: integer, default: 200, maximum: 5000}}
      - {name: follow, in: query, schema: {type: boolean}, description: "stream new lines as SSE"}
    responses:
      200: {description: "{node_id, lines: [{time, level, source, message}], dropped} or text/event-stream"}
    """
    ctl = request.app.state.ctl
    nid = node_id(request)
    await ctl.nodes.get(nid)
    level = (request.query_params.get("level") or "debug").lower()
    if level not in LEVELS:
        raise ValidationFailed(f"level must be one of {', '.join(LEVELS)}", {"level": "unknown level"})
    search = request.query_params.get("search") or None
    since = query_time(request, "since")
    limit = query_int(request, "limit", 200, 1, 5000)
    recent = ctl.logs.query(nid, level=level, search=search, since=since, limit=limit)
    if not query_bool(request, "follow"):
        return json({"node_id": nid, "lines": [r.to_dict() for r in recent],
                     "dropped_by_agent": ctl.logs.agent_dropped.get(nid, 0)})
    min_level = level_value(level)

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


routes = [
    Route("/api/v1/events", events, methods=["GET"]),
    Route("/api/v1/nodes/{id}/logs", node_logs, methods=["GET"]),
]
schemas: list = []
