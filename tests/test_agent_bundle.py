"""What nodes download at first boot: the agent wheel (real, reproducible and pip-installable), the hash-pinned
requirements of its dependencies (agent/requirements.txt, kept in step with pyproject.toml and constraints.txt)
and the controller's own Xray-core binary (controller/core_bundle.py), served with no credential in the URL."""

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
from fastapi import FastAPI
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import agent
from controller.agent_bundle import REQUIREMENTS_SOURCE, REQUIRES, build_agent_wheel
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
    # no build leftovers: the wheel and its requirements file only
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bundle.filename, bundle.requirements.filename])


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


# -- the hash-pinned requirements file -----------------------------------------------------------------------------

def pinned_requirements() -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, [sha256 hashes])} of agent/requirements.txt (pip's multi-line format)."""
    text = REQUIREMENTS_SOURCE.read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        req = Requirement(spec.strip())
        (pin,) = req.specifier
        assert pin.operator == "==", f"{req.name} is not pinned exactly"
        hashes = [h.strip() for h in options]
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), req.name
        pins[canonicalize_name(req.name)] = (pin.version, hashes)
    return pins


def test_requirements_file_pins_every_agent_dependency_with_hashes() -> None:
    """Every dependency in REQUIRES is pinned (with hashes) at a version its specifier allows."""
    pins = pinned_requirements()
    for spec in REQUIRES:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} missing from {REQUIREMENTS_SOURCE}"
        assert req.specifier.contains(pins[name][0]), f"{req.name}=={pins[name][0]} does not satisfy {spec}"


def test_requirements_file_is_current_with_constraints_and_complete() -> None:
    """Nodes run what the tests ran: every pin is constraints.txt's version; and the file is closed under the
    pinned packages' own dependencies (as installed here), so `pip --require-hashes` finds nothing unpinned.
    When this fails, regenerate with the command in the file's header."""
    constraints = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            constraints[canonicalize_name(name)] = version.strip()
    pins = pinned_requirements()
    for name, (version, _) in pins.items():
        assert constraints.get(name) == version, f"{name}=={version} but constraints.txt has {constraints.get(name)}"
    from importlib import metadata
    for name in pins:
        for dep in metadata.requires(name) or []:
            req = Requirement(dep)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra, or another platform's dependency
            assert canonicalize_name(req.name) in pins, f"{name} needs {req.name}, which is not pinned"


def test_the_bundle_ships_the_requirements_file(bundle) -> None:
    shipped = bundle.requirements
    assert shipped.filename == f"vpnfleet_agent-{agent.__version__}-requirements.txt"
    assert shipped.path.read_bytes() == REQUIREMENTS_SOURCE.read_bytes()
    assert hashlib.sha256(shipped.path.read_bytes()).hexdigest() == shipped.sha256


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

def package_get(tmp_path: Path, with_core: bool, *paths: str):
    """(wheel bundle, core bundle or None, [responses]) from the real route in an app whose controller has those
    bundles. No credential is sent: none is needed (the files are sha256-pinned in the user data)."""
    wheel = tmp_path / "vpnfleet_agent-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    reqs = tmp_path / "vpnfleet_agent-0.1.0-requirements.txt"
    reqs.write_bytes(b"grpcio==1 --hash=sha256:00\n")
    requirements = SimpleNamespace(path=reqs, filename=reqs.name, sha256=hashlib.sha256(reqs.read_bytes()).hexdigest())
    bundle = SimpleNamespace(path=wheel, filename=wheel.name, sha256=hashlib.sha256(b"wheel bytes").hexdigest(),
                             requirements=requirements)
    core = None
    if with_core:
        binary = tmp_path / "xray-26.3.27-linux-amd64"
        binary.write_bytes(b"xray bytes")
        core = SimpleNamespace(path=binary, filename=binary.name, sha256=hashlib.sha256(b"xray bytes").hexdigest())

    app = FastAPI(exception_handlers={DomainError: domain_error_handler})
    app.include_router(agent_package.router)
    app.state.ctl = SimpleNamespace(bundle=lambda: bundle, xray_bundle=lambda: core)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ctl") as client:
            return [await client.get(path) for path in paths]

    return bundle, core, asyncio.run(run())


def test_the_package_route_serves_the_wheel_its_requirements_and_xray(tmp_path: Path) -> None:
    names = ["vpnfleet_agent-0.1.0-py3-none-any.whl", "vpnfleet_agent-0.1.0-requirements.txt",
             "xray-26.3.27-linux-amd64"]
    bundle, core, responses = package_get(tmp_path, True, *[f"/agent/package/{n}" for n in names],
                                          "/agent/package/xray-1.8.0-linux-amd64", "/agent/package/..%2Fetc%2Fpasswd")
    for served, ok in zip((bundle, bundle.requirements, core), responses):
        assert ok.status_code == 200 and ok.content == served.path.read_bytes()
        assert ok.headers["x-checksum-sha256"] == served.sha256
        assert ok.headers["content-type"] == "application/octet-stream"
    assert responses[3].status_code == 404 and core.filename in responses[3].text
    assert responses[4].status_code == 404


def test_without_xray_the_route_serves_only_the_wheel_and_requirements(tmp_path: Path) -> None:
    _, _, (wheel, reqs, xray) = package_get(tmp_path, False, "/agent/package/vpnfleet_agent-0.1.0-py3-none-any.whl",
                                            "/agent/package/vpnfleet_agent-0.1.0-requirements.txt",
                                            "/agent/package/xray-26.3.27-linux-amd64")
    assert wheel.status_code == 200 and reqs.status_code == 200 and xray.status_code == 404
