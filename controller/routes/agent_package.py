"""The agent package (a wheel) that cloud-init downloads on a new node, authorised by its enrollment token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from controller.errors import NotFound, Unauthorized


async def agent_package(request: Request):
    """Download the agent wheel. Needs `?token=` (a valid, unused enrollment token); the sha256 to check it
    against is in the node's user data.
    ---
    summary: Agent package download
    tags: [agents]
    security: []
    parameters:
      - {name: filename, in: path, required: true, schema: {type: string}}
      - {name: token, in: query, required: true, schema: {type: string}}
    responses:
      200: {description: "the wheel"}
      401: {description: "missing, used or expired token"}
      404: {description: "no such package"}
    """
    ctl = request.app.state.ctl
    token = request.query_params.get("token", "")
    if not token or not await ctl.enrollment.token_is_valid(token):
        raise Unauthorized("a valid, unused enrollment token is required")
    bundle = ctl.bundle()
    if request.path_params["filename"] != bundle.filename:
        raise NotFound(f"no agent package {request.path_params['filename']} (current: {bundle.filename})")
    return FileResponse(bundle.path, media_type="application/octet-stream", filename=bundle.filename,
                        headers={"X-Checksum-Sha256": bundle.sha256})


routes = [Route("/agent/package/{filename}", agent_package, methods=["GET"])]
schemas: list = []
