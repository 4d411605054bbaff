"""What nodes download at first boot: the agent wheel (real, reproducible and pip-installable) and the
controller's own Xray-core binary (controller/core_bundle.py), both behind the enrollment-token check."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette

import agent
from controller.agent_bundle import REQUIRES, build_agent_wheel
from controller.core_bundle import (BINARY_ENV, CoreBundleError, elf_arch, find_xray, load_core_bundle,
                                    prepare_core_bundle)
from controller.errors import DomainError
from controller.edge.errors import domain_error_handler
from controller.routes import agent_package
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


# -- the Xray binary -----------------------------------------------------------------------------------------------

def elf_header(machine: int, elf_class: int = 2, osabi: int = 0) -> bytes:
    return b"\x7fELF" + bytes([elf_class, 1, 1, osabi]) + bytes(8) + (2).to_bytes(2, "little") \
        + machine.to_bytes(2, "little") + bytes(44)


@pytest.fixture(scope="module")
def xray_binary() -> Path:
    """The real Xray the suite runs with: `make test` builds it (go install at the pinned version) and sets
    $VPNFLEET_XRAY."""
    binary = find_xray()
    if binary is None or not binary.is_file():
        pytest.skip(f"no Xray binary (${BINARY_ENV} or xray on PATH; `make test` builds it)")
    return binary


def test_the_agent_image_builds_the_xray_the_makefile_pins() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    pinned = re.search(r"^XRAY_MODULE_VERSION\s*:=\s*(\S+)$", makefile, re.M)
    assert pinned is not None
    assert f"ARG XRAY_MODULE_VERSION={pinned.group(1)}\n" in (REPO_ROOT / "Dockerfile.agent").read_text()


def test_find_xray_prefers_the_environment_then_path(tmp_path: Path) -> None:
    on_path = tmp_path / "bin" / "xray"
    on_path.parent.mkdir()
    on_path.write_bytes(b"#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_xray({BINARY_ENV: "/opt/x/xray", "PATH": str(on_path.parent)}) == Path("/opt/x/xray")
    assert find_xray({"PATH": str(on_path.parent)}) == on_path
    assert find_xray({BINARY_ENV: "", "PATH": str(tmp_path)}) is None


@pytest.mark.parametrize("header, arch", [
    (elf_header(62), "amd64"), (elf_header(183), "arm64"), (elf_header(62, osabi=3), "amd64"),
    (elf_header(62, elf_class=1), None),  # 32-bit
    (elf_header(62, osabi=9), None),  # FreeBSD
    (elf_header(40), None),  # 32-bit ARM
    (b"#!/bin/sh\necho Xray 26.3.27\n", None),
    (b"", None),
])
def test_elf_arch(tmp_path: Path, header: bytes, arch: str | None) -> None:
    path = tmp_path / "xray"
    path.write_bytes(header)
    if arch is None:
        with pytest.raises(CoreBundleError):
            elf_arch(path)
    else:
        assert elf_arch(path) == arch


def test_the_controller_s_xray_is_copied_hashed_and_named(xray_binary: Path, tmp_path: Path) -> None:
    version = subprocess.run([str(xray_binary), "version"], capture_output=True, text=True, timeout=30).stdout.split()[1]
    out = tmp_path / "agent-package"
    out.mkdir()
    (out / "xray-1.8.0-linux-amd64").write_bytes(b"an older copy")
    (out / "vpnfleet_agent-0.1.0-py3-none-any.whl").write_bytes(b"the wheel")
    core = prepare_core_bundle(xray_binary, out)
    assert core.version == version and core.arch == elf_arch(xray_binary)
    assert core.filename == f"xray-{version}-linux-{core.arch}" and core.path == out / core.filename
    assert core.sha256 == hashlib.sha256(xray_binary.read_bytes()).hexdigest()
    assert core.path.read_bytes() == xray_binary.read_bytes() and core.path.stat().st_mode & 0o777 == 0o755
    # older copies go, the wheel stays, no temporary file is left
    assert sorted(p.name for p in out.iterdir()) == sorted([core.filename, "vpnfleet_agent-0.1.0-py3-none-any.whl"])
    # an identical copy is kept as it is (a node may be downloading it)
    mtime = core.path.stat().st_mtime_ns
    assert prepare_core_bundle(xray_binary, out) == core and core.path.stat().st_mtime_ns == mtime
    # what the controller does at start
    assert load_core_bundle(out, {BINARY_ENV: str(xray_binary)}) == core


def test_no_usable_xray_means_no_bundle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The controller starts without one; its nodes then run V2Ray only (their user data has no Xray step)."""
    fake = tmp_path / "xray"
    fake.write_bytes(b"#!/bin/sh\necho Xray 26.3.27\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    assert load_core_bundle(out, {BINARY_ENV: str(fake)}) is None
    assert load_core_bundle(out, {BINARY_ENV: str(tmp_path / "missing")}) is None
    assert load_core_bundle(out, {"PATH": str(tmp_path / "empty")}) is None
    assert "V2Ray only" in caplog.text
    assert not out.exists() or not list(out.iterdir())


def test_an_elf_that_is_not_xray_is_refused(tmp_path: Path) -> None:
    true = shutil.which("true")
    if true is None or elf_arch_or_none(Path(true)) is None:
        pytest.skip("needs a native ELF `true`")
    with pytest.raises(CoreBundleError, match="Xray release"):
        prepare_core_bundle(Path(true), tmp_path)


def elf_arch_or_none(path: Path) -> str | None:
    try:
        return elf_arch(path.resolve())
    except CoreBundleError:
        return None


# -- the download route --------------------------------------------------------------------------------------------

def package_get(tmp_path: Path, with_core: bool, *requests: tuple[str, dict[str, str]]):
    """(wheel bundle, core bundle or None, [responses]) from the real route in an app whose controller has those
    bundles and takes the enrollment token "good"."""
    wheel = tmp_path / "vpnfleet_agent-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    bundle = SimpleNamespace(path=wheel, filename=wheel.name, sha256=hashlib.sha256(b"wheel bytes").hexdigest())
    core = None
    if with_core:
        binary = tmp_path / "xray-26.3.27-linux-amd64"
        binary.write_bytes(b"xray bytes")
        core = SimpleNamespace(path=binary, filename=binary.name, sha256=hashlib.sha256(b"xray bytes").hexdigest())

    async def token_is_valid(token: str) -> bool:
        return token == "good"

    app = Starlette(routes=agent_package.routes, exception_handlers={DomainError: domain_error_handler})
    app.state.ctl = SimpleNamespace(enrollment=SimpleNamespace(token_is_valid=token_is_valid),
                                    bundle=lambda: bundle, xray_bundle=lambda: core)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ctl") as client:
            return [await client.get(path, params=params) for path, params in requests]

    return bundle, core, asyncio.run(run())


def test_the_package_route_serves_the_wheel_and_xray_to_a_valid_token(tmp_path: Path) -> None:
    names = ["vpnfleet_agent-0.1.0-py3-none-any.whl", "xray-26.3.27-linux-amd64"]
    requests = [(f"/agent/package/{name}", params) for name in names
                for params in ({"token": "good"}, {"token": "bad"}, {})]
    bundle, core, responses = package_get(tmp_path, True, *requests,
                                          ("/agent/package/xray-1.8.0-linux-amd64", {"token": "good"}))
    for served, (ok, bad, missing) in zip((bundle, core), (responses[0:3], responses[3:6])):
        assert ok.status_code == 200 and ok.content == served.path.read_bytes()
        assert ok.headers["x-checksum-sha256"] == served.sha256
        assert ok.headers["content-type"] == "application/octet-stream"
        assert bad.status_code == 401 and missing.status_code == 401
    assert responses[6].status_code == 404 and core.filename in responses[6].text


def test_without_xray_the_route_serves_only_the_wheel(tmp_path: Path) -> None:
    _, _, (wheel, xray) = package_get(tmp_path, False, ("/agent/package/vpnfleet_agent-0.1.0-py3-none-any.whl",
                                                        {"token": "good"}),
                                      ("/agent/package/xray-26.3.27-linux-amd64", {"token": "good"}))
    assert wheel.status_code == 200 and xray.status_code == 404
