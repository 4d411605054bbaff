"""How rows look in API responses and events (one place, so REST and SSE always agree)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.models import Node, Operation
from controller.services.desired_state import node_core, node_v2ray_inbounds
from controller.settings import Settings


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def node_to_dict(node: Node) -> dict[str, Any]:
    return {
        "id": node.uuid,
        "seq": node.id,
        "name": node.name,
        "region": node.region,
        "region_name": node.region_name,
        "provider": node.provider,
        "instance_id": node.instance_id,
        "public_ip": node.public_ip,
        "private_ip": node.private_ip,
        "status": node.status,
        "status_reason": node.status_reason,
        "status_changed_at": iso(node.status_changed_at),
        "created_at": iso(node.created_at),
        "updated_at": iso(node.updated_at),
        "deleted_at": iso(node.deleted_at),
        "agent": {
            "connectivity": "online" if node.online else "offline",
            "online": node.online,
            "last_seen_at": iso(node.last_seen_at),
            "enrolled": node.cert_fingerprint is not None,
            "enrolled_at": iso(node.enrolled_at),
            "version": node.agent_version,
            "hostname": node.hostname,
            "capabilities": node.capabilities or [],
            "desired_revision": node.desired_revision,
            "applied_revision": node.applied_revision,
            "in_sync": node.applied_revision >= node.desired_revision,
            "components": node.component_status or [],
            "settings": node.agent_settings or {},
            "telemetry_dropped": node.telemetry_dropped,
            # entries the controller refused (usage for subscribers/peers not on the node, impossible values)
            "telemetry_rejected": node.telemetry_rejected or 0,
        },
        # the proxy core, and where subscribers connect: [{tag, protocol, port, listen, profile}] (None for nodes
        # created before V2Ray: the settings' ports). A node from before cores shows what it moves to.
        "core": node_core(node),
        "v2ray_inbounds": (node_v2ray_inbounds(node, Settings.v2ray_port, Settings.v2ray_vless_port)
                           if node.v2ray_inbounds is not None else None),
        # public REALITY values (never the private key); dest/server_names null: the region's or fleet's
        "reality": {
            "public_key": node.reality_public_key,
            "short_ids": list(node.reality_short_ids or []),
            "dest": node.reality_dest,
            "server_names": node.reality_server_names,
        },
        "ws_path": node.ws_path,
    }


def seed000_time(value: dt.datetime | None) -> str:
    """Seed 000's timestamp format: "2024-01-01 00:00:00" (UTC)."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def node_to_v2ray_instance(node: Node) -> dict[str, Any]:
    """Seed 000's instance shape."""
    return {
        "id": node.id,
        "uuid": node.uuid,
        "ec2_id": node.instance_id or "",
        "ec2_region": node.region,
        "ec2_region_name": node.region_name,
        "ec2_public_ip": node.public_ip or "",
        "status": node.status,
        "created_at": seed000_time(node.created_at),
        "updated_at": seed000_time(node.updated_at),
    }


def operation_to_dict(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "actor": op.actor,
        "action": op.action,
        "target_type": op.target_type,
        "target_id": op.target_id,
        "client_id": op.client_id,
        "payload": op.payload,
        "result": op.result,
        "status_code": op.status_code,
        "error": op.error,
        "request_id": op.request_id,
        "created_at": iso(op.created_at),
    }
