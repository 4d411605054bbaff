"""The operator panel at /ui/: the files `make panel` builds into controller/panel/dist (committed).

index.html is answered for /ui/ (never cached: it names the current build's assets); the assets are named by
their content hash, so they are cached for a year. Each file is read and gzip-compressed once, at the first
request, and answered compressed to clients that accept it. Nothing is fetched from anywhere else: the
panel works offline, under a CSP that allows only its own files and calls to this API.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Header
from starlette.responses import RedirectResponse, Response

from controller.access import public
from controller.errors import NotFound

#: the committed build; $VPNFLEET_PANEL_DIST serves another (a build in progress, while working on the panel)
DIST = Path(os.environ.get("VPNFLEET_PANEL_DIST") or Path(__file__).resolve().parent.parent / "panel" / "dist")
#: what the build writes to dist/assets: app-<hash>.js and app-<hash>.css
_ASSET = re.compile(r"[A-Za-z0-9_-]{1,64}\.(js|css)")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
_IMMUTABLE = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str


def _asset(path: Path, media_type: str) -> Asset:
    return _read(path, path.stat().st_mtime_ns, media_type)


@lru_cache(maxsize=64)  # the few files of a build (a rebuild while working on the panel adds new ones)
def _read(path: Path, _mtime_ns: int, media_type: str) -> Asset:
    """The file as it is at that modification time (a rebuilt index.html is answered at once)."""
    body = path.read_bytes()
    return Asset(body, gzip.compress(body, compresslevel=9, mtime=0), media_type)


def _answer(asset: Asset, accept_encoding: str | None, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if "gzip" in (accept_encoding or ""):
        return Response(asset.gzipped, media_type=asset.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _index() -> Asset:
    index = DIST / "index.html"
    if not index.is_file():
        raise NotFound("the panel is not built: run `make panel`")
    return _asset(index, "text/html; charset=utf-8")


@router.get("/ui", dependencies=[public()])
async def panel_root() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/", dependencies=[public()])
async def panel_index(accept_encoding: str | None = Header(default=None)) -> Response:
    """The panel's one page; its screens are #fragments of it."""
    return _answer(_index(), accept_encoding, "no-cache")


@router.get("/ui/assets/{name}", dependencies=[public()])
async def panel_asset(name: str, accept_encoding: str | None = Header(default=None)) -> Response:
    match = _ASSET.fullmatch(name)
    path = DIST / "assets" / name
    if not match or not path.is_file():
        raise NotFound(f"no file {name} in /ui/assets")
    return _answer(_asset(path, _TYPES[match.group(1)]), accept_encoding, _IMMUTABLE)
