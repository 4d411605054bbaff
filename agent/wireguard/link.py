"""The interface as the kernel sees it, through iproute2's `ip` (JSON output): link, addresses, MTU, up."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import subprocess
from typing import Sequence

COMMAND_TIMEOUT_SECONDS = 15.0


class CommandError(RuntimeError):
    """A command failed; the message carries its stderr."""


def run(argv: Sequence[str], input: str | None = None, timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
    """Run argv, return stdout; CommandError with stderr if it fails or cannot start."""
    try:
        done = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv)}: no answer within {timeout:.0f}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise CommandError(f"{' '.join(argv)}: {detail}")
    return done.stdout


@dataclasses.dataclass
class LinkInfo:
    name: str
    ifindex: int
    #: "wireguard" (kernel), "tun" (wireguard-go), ...; "" if the kernel does not say.
    kind: str
    mtu: int
    up: bool


def link_info(name: str) -> LinkInfo | None:
    """The link named `name` in this network namespace, or None if there is none."""
    try:
        out = run(["ip", "-d", "-j", "link", "show", "dev", name])
    except CommandError as exc:
        if "does not exist" in str(exc) or "Cannot find device" in str(exc):
            return None
        raise
    data = json.loads(out or "[]")
    if not data:
        return None
    item = data[0]
    return LinkInfo(
        name=item["ifname"],
        ifindex=item["ifindex"],
        kind=item.get("linkinfo", {}).get("info_kind", ""),
        mtu=item.get("mtu", 0),
        up="UP" in item.get("flags", []),
    )


def addresses(name: str) -> list[str]:
    """Global addresses of the link as normalised "ip/prefix" (link-local ones are the kernel's, not ours)."""
    data = json.loads(run(["ip", "-j", "addr", "show", "dev", name]) or "[]")
    found = []
    for item in data:
        for info in item.get("addr_info", []):
            if info.get("scope") not in ("global", "site", None) or "local" not in info:
                continue
            found.append(str(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")))
    return found


def add_address(name: str, cidr: str) -> None:
    run(["ip", "addr", "add", cidr, "dev", name])


def del_address(name: str, cidr: str) -> None:
    run(["ip", "addr", "del", cidr, "dev", name])


def set_mtu(name: str, mtu: int) -> None:
    run(["ip", "link", "set", "dev", name, "mtu", str(mtu)])


def set_up(name: str) -> None:
    run(["ip", "link", "set", "dev", name, "up"])


def delete(name: str) -> None:
    run(["ip", "link", "del", "dev", name])


def add_wireguard(name: str) -> None:
    """Create a kernel WireGuard link; CommandError where the module is missing."""
    run(["ip", "link", "add", "dev", name, "type", "wireguard"])


def default_route_device(version: int) -> str | None:
    """The device of the main table's default route for IPv4 (4) or IPv6 (6); None without one."""
    try:
        data = json.loads(run(["ip", f"-{version}", "-j", "route", "show", "default"]) or "[]")
    except CommandError:
        return None
    for route in data:
        if route.get("dev"):
            return route["dev"]
    return None
