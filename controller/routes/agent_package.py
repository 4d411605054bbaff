"""What cloud-init downloads on a new node, authorised by its enrollment token: the agent package (a wheel) and,
when the controller has one, its Xray-core binary (controller/core_bundle.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from controller.errors import NotFound, Unauthorized


async def agent_package(request: Request):
    """Download the agent wheel, or the Xray-core binary (`xray-<version>-linux-<arch>`, when the controller
    serves one). Needs `?token=` (a valid, unused enrollment token); the sha256 to check the file against is in
    the node's user data.
    ---
    summary: Agent package download
    tags: [agents]
    security: []
    parameters:
      - {name: filename, in: path, required: true, schema: {type: string}}
      - {name: token, in: query, required: true, schema: {type: string}}
    responses:
      200: {description: "the wheel or the Xray binary"}
      401: {description: "missing, used or expired token"}
      404: {description: "no such package"}
    """
    ctl = request.app.state.ctl
    token = request.query_params.get("token", "")
    if not token or not await ctl.enrollment.token_is_valid(token):
        raise Unauthorized("a valid, unused enrollment token is required")
    filename = request.path_params["filename"]
    wheel = ctl.bundle()
    xray = ctl.xray_bundle()  # None: this controller serves no Xray
    served = {f.filename: f for f in (wheel, xray) if f is not None}.get(filename)
    if served is None:
        current = ", ".join(f.filename for f in (wheel, xray) if f is not None)
        raise NotFound(f"no agent package {filename} (current: {current})")
    return FileResponse(served.path, media_type="application/octet-stream", filename=served.filename,
                        headers={"X-Checksum-Sha256": served.sha256})


routes = [Route("/agent/package/{filename}", agent_package, methods=["GET"])]
schemas: list = []
