"""host:port addresses as the settings hold them: "host", "host:port", "[v6]:port" or "unix:/path"."""

from __future__ import annotations

from controller.settings.errors import SettingsError


def is_unix(addr: str) -> bool:
    """gRPC addresses may be unix sockets ("unix:/run/vpnfleet/grpc.sock"), e.g. behind a local proxy."""
    return addr.startswith("unix:")


def split_hostport(addr: str, default_port: int = 0) -> tuple[str, int]:
    """Split "host:port" / "[v6]:port" / "host"; raises SettingsError on a bad port."""
    addr = addr.strip()
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, port_text = addr.split(":")
    else:
        host, port_text = addr, ""
    if not port_text:
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(f"bad port in address {addr!r}")
    return host, int(port_text)


def _dialable(host: str) -> str:
    """A wildcard listen host is not something to dial: use loopback instead."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def join_hostport(host: str, port: int) -> str:
    """"host:port", with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
