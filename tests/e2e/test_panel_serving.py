"""The controller serves the built panel at /ui/: public, gzip-compressed, its assets cached by content hash,
nothing but its own files reachable there, under the panel's CSP."""

from __future__ import annotations

import gzip
import re

from controller.edge.headers import PANEL_CSP
from controller.routes.panel import DIST
from tests.controller_process import ControllerProcess


def test_the_panel_page_and_its_assets(controller: ControllerProcess) -> None:
    with controller.http_client() as http:
        assert http.get("/ui").status_code == 308
        page = http.get("/ui/", headers={"Accept-Encoding": "identity"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["content-security-policy"] == PANEL_CSP
        assert page.text == (DIST / "index.html").read_text()
        assets = re.findall(r'/ui/assets/([A-Za-z0-9_-]+\.(?:js|css))', page.text)
        assert len(assets) == 2
        for name in assets:
            raw = http.get(f"/ui/assets/{name}", headers={"Accept-Encoding": "identity"})
            assert raw.status_code == 200 and "content-encoding" not in raw.headers
            assert raw.content == (DIST / "assets" / name).read_bytes()
            assert "immutable" in raw.headers["cache-control"]
            packed = http.get(f"/ui/assets/{name}", headers={"Accept-Encoding": "gzip"})
            assert packed.headers["content-encoding"] == "gzip"
            assert int(packed.headers["content-length"]) < len(raw.content)
            assert packed.content == raw.content  # httpx decodes it: the same bytes
            assert gzip.decompress(gzip.compress(raw.content)) == raw.content


def test_only_the_panels_own_files_are_reachable(controller: ControllerProcess) -> None:
    with controller.http_client() as http:
        for name in ("../index.html", "..%2Findex.html", "app.map", "index.html", "x.js", ".js", "a" * 70 + ".js"):
            answer = http.get(f"/ui/assets/{name}")
            assert answer.status_code == 404, (name, answer.status_code)
            if answer.headers.get("content-type", "").startswith("application/json"):
                assert answer.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
        # no key needed for the page, but the API behind it still wants one
        assert http.get("/ui/").status_code == 200
        assert http.get("/api/v1/nodes").status_code == 401
