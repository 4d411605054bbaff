"""Build the agent wheel nodes download at first boot, from the ``agent`` and ``protos`` source packages, and
ship beside it the hash-pinned requirements file its dependencies install from (``pip --require-hashes``).

The build is reproducible (sorted entries, fixed timestamps and modes), so the controller can rebuild it at
every start and still hand out the same sha256; an identical wheel already on disk is left in place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from zipfile import ZipInfo

from wheel.wheelfile import WheelFile

import agent
import protos

DIST_NAME = "vpnfleet_agent"
#: Runtime dependencies of the agent; the same floors as pyproject.toml's [project] dependencies (a test
#: keeps them in step). Not read from pyproject.toml at run time: an installed controller has none.
REQUIRES = (
    "grpcio>=1.60,<2",
    "protobuf>=5.26",
    "cryptography>=42",
    "pyyaml>=6",
    "psutil>=5.9",
)
REQUIRES_PYTHON = ">=3.11"
ENTRY_POINTS = "[console_scripts]\nvpnfleet-agent = agent.main:main\n"
#: The agent's dependencies, every version pinned and every file hashed (pip-compile --generate-hashes; see its
#: header for the command, tests/test_agent_bundle.py keeps it in step with REQUIRES and constraints.txt).
REQUIREMENTS_SOURCE = Path(agent.__file__).resolve().parent / "requirements.txt"
#: 1980-01-01, the earliest time a zip entry can carry.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class RequirementsFile:
    """The agent's hash-pinned requirements, as served to nodes."""

    path: Path
    filename: str
    sha256: str


@dataclass(frozen=True)
class AgentBundle:
    """A built agent wheel, and the requirements file its dependencies install from."""

    path: Path
    filename: str
    sha256: str
    version: str
    requirements: RequirementsFile


def build_agent_wheel(out_dir: Path) -> AgentBundle:
    """Build (or reuse) ``vpnfleet_agent-<version>-py3-none-any.whl`` in out_dir."""
    version = agent.__version__
    filename = f"{DIST_NAME}-{version}-py3-none-any.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / filename
    # WheelFile checks the name it is given, so build under the final name in a private directory (on the
    # same filesystem, so the move below is atomic).
    with tempfile.TemporaryDirectory(prefix=".agent-build-", dir=out_dir) as build_dir:
        built = Path(build_dir) / filename
        _write_wheel(built, version)
        digest = file_sha256(built)
        if not target.exists() or file_sha256(target) != digest:
            # A node downloading meanwhile gets the old file or the new one, never half of one.
            os.replace(built, target)
    return AgentBundle(path=target, filename=filename, sha256=digest, version=version,
                       requirements=copy_requirements(out_dir, version))


def copy_requirements(out_dir: Path, version: str, source: Path = REQUIREMENTS_SOURCE) -> RequirementsFile:
    """Put the requirements file beside the wheel (atomically, unchanged when identical)."""
    filename = f"{DIST_NAME}-{version}-requirements.txt"
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    target = out_dir / filename
    if not target.exists() or file_sha256(target) != digest:
        tmp = out_dir / f".{filename}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return RequirementsFile(path=target, filename=filename, sha256=digest)


def source_files() -> list[tuple[str, Path]]:
    """(archive name, source path) of every file the wheel carries, sorted."""
    files: list[tuple[str, Path]] = []
    for package in (agent, protos):
        root = Path(package.__file__).resolve().parent
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (package is protos and path.suffix == ".proto"):
                files.append((f"{root.name}/{rel.as_posix()}", path))
    return sorted(files)


def metadata(version: str) -> str:
    lines = ["Metadata-Version: 2.1", "Name: vpnfleet-agent", f"Version: {version}",
             "Summary: vpnfleet node agent", f"Requires-Python: {REQUIRES_PYTHON}"]
    lines += [f"Requires-Dist: {req}" for req in REQUIRES]
    return "\n".join(lines) + "\n"


def wheel_info() -> str:
    return "Wheel-Version: 1.0\nGenerator: vpnfleet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _write_wheel(path: Path, version: str) -> None:
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    with _ReproducibleWheelFile(path, "w") as whl:
        for arcname, source in source_files():
            whl.writestr(arcname, source.read_bytes())
        whl.writestr(f"{dist_info}/METADATA", metadata(version))
        whl.writestr(f"{dist_info}/WHEEL", wheel_info())
        whl.writestr(f"{dist_info}/entry_points.txt", ENTRY_POINTS)
        # RECORD is written by WheelFile.close(), through writestr below.


class _ReproducibleWheelFile(WheelFile):
    """WheelFile whose entries all carry a fixed date and mode (WheelFile stamps RECORD with "now")."""

    def writestr(self, zinfo_or_arcname: str | ZipInfo, data: bytes | str, compress_type: int | None = None) -> None:
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = ZipInfo(zinfo_or_arcname, date_time=FIXED_DATE)
            zinfo_or_arcname.compress_type = self.compression
            zinfo_or_arcname.external_attr = 0o100644 << 16
        super().writestr(zinfo_or_arcname, data, compress_type)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (what nodes check their downloads against)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
