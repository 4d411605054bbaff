"""The agent wheel nodes download: real, reproducible and pip-installable."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import agent
from controller.agent_bundle import REQUIRES, build_agent_wheel
from controller.settings import REPO_ROOT


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    return build_agent_wheel(tmp_path_factory.mktemp("dist"))


def test_wheel_name_and_hash(bundle) -> None:
    assert bundle.filename == f"vpnfleet_agent-{agent.__version__}-py3-none-any.whl"
    assert bundle.path.name == bundle.filename and bundle.version == agent.__version__
    assert hashlib.sha256(bundle.path.read_bytes()).hexdigest() == bundle.sha256


def test_build_is_deterministic(bundle, tmp_path: Path) -> None:
    again = build_agent_wheel(tmp_path)
    assert again.sha256 == bundle.sha256
    # rebuilding in place keeps the identical file
    mtime = again.path.stat().st_mtime_ns
    assert build_agent_wheel(tmp_path).sha256 == bundle.sha256
    assert again.path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [bundle.filename]  # no build leftovers


def test_wheel_contents(bundle) -> None:
    with zipfile.ZipFile(bundle.path) as whl:
        names = set(whl.namelist())
        dist_info = f"vpnfleet_agent-{agent.__version__}.dist-info"
        meta = whl.read(f"{dist_info}/METADATA").decode()
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
    expected = {"agent/__init__.py", "agent/config.py", "protos/__init__.py", "protos/agent_pb2.py",
                "protos/agent_pb2_grpc.py", "protos/agent.proto", f"{dist_info}/RECORD", f"{dist_info}/WHEEL"}
    if (Path(agent.__file__).parent / "main.py").exists():
        expected.add("agent/main.py")
    assert expected <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "Name: vpnfleet-agent" in meta and "Requires-Python: >=3.11" in meta
    for name in ("grpcio", "protobuf", "cryptography", "pyyaml", "psutil"):
        assert f"Requires-Dist: {name}>=" in meta
    assert "vpnfleet-agent = agent.main:main" in entry_points


def test_requirements_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert list(REQUIRES) == pyproject["project"]["dependencies"]


def test_pip_installs_the_wheel(bundle, tmp_path: Path) -> None:
    target = tmp_path / "site"
    # --no-deps keeps this offline; the wheel itself must be valid for pip (RECORD, WHEEL, names).
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
         "--target", str(target), str(bundle.path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "agent" / "config.py").is_file()
    assert (target / "protos" / "agent.proto").is_file()
    script = target / "bin" / "vpnfleet-agent"
    assert script.is_file()
    # The console script runs the installed copy (dependencies come from this venv).
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert version.returncode == 0, version.stderr
    assert agent.__version__ in version.stdout
