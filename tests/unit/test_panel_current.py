"""The committed panel is what its sources make: the API client's types match /openapi.json, the TypeScript
type-checks (so every catalog has every string in every language), and dist/ is the build of src/.

Run by `make check-panel` (part of `make test`), which first installs the panel's npm packages from the lock file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.openapi_export import openapi_document

PANEL = Path(__file__).resolve().parents[2] / "controller" / "panel"
NPX = shutil.which("npx")

pytestmark = pytest.mark.skipif(NPX is None, reason="Node.js is not installed")


def _node_modules() -> None:
    if not (PANEL / "node_modules" / ".bin" / "openapi-typescript").exists():
        pytest.fail("the panel's npm packages are missing: run `make panel-deps`")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PANEL, capture_output=True, text=True, timeout=300)


def test_api_types_are_generated_from_the_current_openapi(tmp_path: Path) -> None:
    _node_modules()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(openapi_document(), indent=1, sort_keys=True) + "\n")
    out = tmp_path / "schema.d.ts"
    done = _run(str(NPX), "openapi-typescript", str(spec), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (PANEL / "src" / "api" / "schema.d.ts").read_text(), \
        "src/api/schema.d.ts is stale: run `make panel` and commit it"


def test_typescript_type_checks() -> None:
    _node_modules()
    done = _run(str(NPX), "tsc", "--noEmit")
    assert done.returncode == 0, done.stdout + done.stderr


def test_dist_is_the_build_of_the_sources(tmp_path: Path) -> None:
    _node_modules()
    done = _run("node", "build.mjs", str(tmp_path / "dist"))
    assert done.returncode == 0, done.stderr

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    built, committed = files(tmp_path / "dist"), files(PANEL / "dist")
    assert sorted(built) == sorted(committed), "controller/panel/dist is stale: run `make panel` and commit it"
    for name, body in built.items():
        assert committed[name] == body, f"controller/panel/dist/{name} is stale: run `make panel` and commit it"
