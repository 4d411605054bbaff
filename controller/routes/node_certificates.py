"""A node's agent certificate: revoke it, or re-enroll the node (a new one-time token, same node id)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter

from controller.access import requires
from controller.permissions import Permission as P
from controller.api import Ctl, errors, uuid_or_404, uuid_path
from controller.schemas.node_certificates import NodeCertificate, ReenrollmentToken

router = APIRouter()

NodeId = Annotated[str, uuid_path("the node's id (uuid)")]
_NOT_FOUND = "node not found: "


@router.post("/api/v1/nodes/{node_id}/revoke", dependencies=[requires(P.NODES_EDIT)], response_model=NodeCertificate, responses=errors(404, 409),
             tags=["nodes"], summary="Revoke a node's certificate")
async def revoke_node_certificate(ctl: Ctl, node_id: NodeId) -> dict[str, Any]:
    """Refuse the node's certificate from now on: its live stream is cut at once, its next connect is refused
    (the agent stops with exit code 3) and its unused enrollment tokens die. The node's data plane keeps
    running as last applied. Only a re-enrollment brings it back. Idempotent."""
    status = await ctl.certificates.revoke(uuid_or_404(node_id, _NOT_FOUND))
    return dataclasses.asdict(status)


@router.post("/api/v1/nodes/{node_id}/reenroll", dependencies=[requires(P.NODES_EDIT)], response_model=ReenrollmentToken, responses=errors(404, 409),
             tags=["nodes"], summary="Re-enroll a node")
async def reenroll_node(ctl: Ctl, node_id: NodeId) -> dict[str, Any]:
    """A new one-time enrollment token for the same node id (older unused tokens die). The token is shown only
    in this answer. The node's current certificate keeps working until an agent enrolls with the token; from
    then on only the new certificate is accepted and the old stream is dropped."""
    token = await ctl.certificates.reenroll(uuid_or_404(node_id, _NOT_FOUND))
    return {"node_id": token.node_id, "enrollment_token": token.token, "expires_at": token.expires_at}
