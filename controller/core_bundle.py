"""The Xray-core binary nodes download at first boot: the very one this controller runs with.

Found as ``$VPNFLEET_XRAY``, else ``xray`` on PATH (``make run`` builds it into the venv at the pinned version
and puts it there). At start it is copied, once, into the controller's package directory and hashed: nodes get
that copy (``GET /agent/package/xray-<version>-linux-<arch>``, the same enrollment-token check as the agent
wheel) and check it against the sha256 in their user data, so rebuilding the controller's own binary meanwhile
cannot make a booting node's check fail. A controller without a usable Xray serves none: its nodes' user data
carries no Xray download and they run V2Ray only.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from controller.agent_bundle import file_sha256

log = logging.getLogger("vpnfleet.core")

BINARY_ENV = "VPNFLEET_XRAY"
FILE_PREFIX = "xray-"
VERSION_TIMEOUT = 10.0
#: ELF e_machine -> the architecture name that Go and Debian (dpkg --print-architecture) both use.
ELF_MACHINES = {62: "amd64", 183: "arm64"}
#: ELF EI_OSABI values a Linux Go binary carries: System V (Go's default) and GNU/Linux.
_LINUX_OSABI = {0, 3}
#: `xray version` prints "Xray 26.3.27 (Xray, Penetrates Everything.) ..." first.
_VERSION = re.compile(r"Xray (\d+\.\d+\.\d+)\b")


class CoreBundleError(RuntimeError):
    """The binary cannot be served to nodes (unreadable, not a Linux binary, no version)."""


@dataclass(frozen=True)
class CoreBundle:
    """The Xray binary copy that nodes download."""

    path: Path
    filename: str
    sha256: str
    version: str
    arch: str


def find_xray(env: Mapping[str, str] | None = None) -> Path | None:
    """``$VPNFLEET_XRAY`` (as given, even if missing: the caller reports it), else ``xray`` on PATH, else None."""
    env = os.environ if env is None else env
    if env.get(BINARY_ENV):
        return Path(env[BINARY_ENV])
    found = shutil.which("xray", path=env.get("PATH"))
    return Path(found) if found else None


def elf_arch(path: Path) -> str:
    """"amd64" or "arm64" for a 64-bit little-endian Linux ELF executable; CoreBundleError otherwise."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError as exc:
        raise CoreBundleError(f"cannot read {path}: {exc.strerror}") from exc
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise CoreBundleError(f"{path} is not an ELF executable")
    machine = int.from_bytes(header[18:20], "little")
    # EI_CLASS 2: 64-bit; EI_DATA 1: little-endian
    if header[4] != 2 or header[5] != 1 or header[7] not in _LINUX_OSABI or machine not in ELF_MACHINES:
        raise CoreBundleError(f"{path} is not a Linux amd64 or arm64 executable")
    return ELF_MACHINES[machine]


def xray_version(path: Path) -> str:
    """The release `path version` names, e.g. "26.3.27"."""
    try:
        result = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CoreBundleError(f"cannot run {path} version: {exc}") from exc
    match = _VERSION.match(result.stdout)
    if result.returncode != 0 or match is None:
        raise CoreBundleError(f"{path} version did not name an Xray release: {result.stdout[:80]!r}")
    return match.group(1)


def prepare_core_bundle(binary: Path, out_dir: Path) -> CoreBundle:
    """Copy binary to out_dir as ``xray-<version>-linux-<arch>`` (kept if identical), drop older copies."""
    arch = elf_arch(binary)
    version = xray_version(binary)
    filename = f"{FILE_PREFIX}{version}-linux-{arch}"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / filename
    digest = file_sha256(binary)
    if not target.exists() or file_sha256(target) != digest:
        fd, tmp = tempfile.mkstemp(prefix=".xray-", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as dst, binary.open("rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(tmp, 0o755)
            # A node downloading meanwhile gets the old file or the new one, never half of one.
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if file_sha256(target) != digest:  # the source changed while it was copied
            raise CoreBundleError(f"{binary} changed while it was copied")
    for old in out_dir.glob(f"{FILE_PREFIX}*-linux-*"):
        if old.name != filename:
            old.unlink(missing_ok=True)
    return CoreBundle(path=target, filename=filename, sha256=digest, version=version, arch=arch)


def load_core_bundle(out_dir: Path, env: Mapping[str, str] | None = None) -> CoreBundle | None:
    """The Xray bundle for nodes, or None (logged) when this controller has no usable Xray binary."""
    binary = find_xray(env)
    if binary is None:
        log.warning("no Xray binary ($%s unset, no xray on PATH): new nodes get V2Ray only", BINARY_ENV)
        return None
    try:
        bundle = prepare_core_bundle(binary, out_dir)
    except CoreBundleError as exc:
        log.warning("Xray binary not served to nodes (%s): new nodes get V2Ray only", exc)
        return None
    log.info("serving Xray %s (linux-%s, sha256 %s) from %s to new nodes", bundle.version, bundle.arch,
             bundle.sha256[:12], binary)
    return bundle
