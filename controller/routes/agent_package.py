"""What cloud-init downloads on a new node: the agent package (a wheel), the hash-pinned requirements of its
dependencies and, when the controller has one, its Xray-core binary (controller/core_bundle.py).

None of them is secret, and each is pinned by sha256 in the node's user data, so the download needs no
credential at all: the enrollment token never rides in a URL (a sniffed URL would have let anyone redeem it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fastapi import APIRouter
from fastapi.responses import FileResponse

from controller.access import public
from controller.api import Ctl, errors
from controller.errors import NotFound

if TYPE_CHECKING:
    from pathlib import Path

    from controller.app import Controller

router = APIRouter()


class ServedFile(Protocol):
    """AgentBundle, its RequirementsFile and CoreBundle all look like this."""

    path: "Path"
    filename: str
    sha256: str



def served_files(ctl: "Controller") -> list[ServedFile]:
    """What nodes may download: the wheel, its requirements, and the Xray binary when there is one."""
    wheel = ctl.bundle()
    xray = ctl.xray_bundle()  # None: this controller serves no Xray
    return [wheel, wheel.requirements] + ([xray] if xray is not None else [])


@router.get(
    "/agent/package/{filename}", dependencies=[public()], tags=["agents"], summary="Agent package download",
    response_class=FileResponse, responses={200: {"description": "the file (application/octet-stream)",
                                                  "content": {"application/octet-stream": {}}}, **errors(404)},
    openapi_extra={"security": []},
)
async def agent_package(ctl: Ctl, filename: str) -> FileResponse:
    """Download the agent wheel, its requirements file, or the Xray-core binary (`xray-<version>-linux-<arch>`,
    when the controller serves one). No credential: the sha256 to check each file against is in the node's
    user data (and in the `X-Checksum-Sha256` header)."""
    files = served_files(ctl)
    served = {f.filename: f for f in files}.get(filename)
    if served is None:
        current = ", ".join(sorted(f.filename for f in files))
        raise NotFound(f"no agent package {filename[:200]} (current: {current})")
    return FileResponse(served.path, media_type="application/octet-stream", filename=served.filename,
                        headers={"X-Checksum-Sha256": served.sha256})
