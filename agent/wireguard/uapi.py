"""wireguard-go's cross-platform UAPI: a text protocol on the unix socket /var/run/wireguard/NAME.sock.

    get=1\n\n                      -> key=value lines ... errno=0\n\n
    set=1\nkey=value\n...\n\n      -> errno=0\n\n  (errno < 0 on failure: -22 EINVAL, -98 EADDRINUSE, ...)

Keys are hex on the wire (base64 in the rest of the agent). Device-level keys come first; every
`public_key=` line starts a peer. A failed set is not atomic: lines before the bad one stay applied,
which is why the driver snapshots the device before changing it.
"""

from __future__ import annotations

import os
import socket

from agent.wireguard.model import (
    ZERO_KEY_HEX,
    DeviceState,
    DeviceUpdate,
    PeerState,
    key_from_hex,
    key_to_hex,
    normalise_networks,
)

SOCKET_DIR = "/var/run/wireguard"
TIMEOUT_SECONDS = 10.0


class UapiError(RuntimeError):
    """The device answered with a non-zero errno, or the socket misbehaved."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


def socket_path(name: str, directory: str = SOCKET_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")


def render_set(update: DeviceUpdate) -> str:
    lines = ["set=1"]
    if update.private_key is not None:
        lines.append(f"private_key={key_to_hex(update.private_key) if update.private_key else ZERO_KEY_HEX}")
    if update.listen_port is not None:
        lines.append(f"listen_port={update.listen_port}")
    for peer in update.peers:
        lines.append(f"public_key={key_to_hex(peer.public_key)}")
        if peer.remove:
            lines.append("remove=true")
            continue
        if peer.preshared_key is not None:
            lines.append(f"preshared_key={key_to_hex(peer.preshared_key) if peer.preshared_key else ZERO_KEY_HEX}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={peer.endpoint}")
        if peer.persistent_keepalive is not None:
            lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive}")
        if peer.allowed_ips is not None:
            lines.append("replace_allowed_ips=true")
            lines.extend(f"allowed_ip={cidr}" for cidr in peer.allowed_ips)
    return "\n".join(lines) + "\n\n"


def parse_get(text: str) -> DeviceState:
    """DeviceState from a get=1 answer (the errno line is checked by the caller)."""
    device = DeviceState()
    peer: PeerState | None = None
    allowed: list[str] = []
    hs_sec = hs_nsec = 0

    def finish() -> None:
        if peer is not None:
            peer.allowed_ips = normalise_networks(allowed)
            peer.last_handshake_ms = hs_sec * 1000 + hs_nsec // 1_000_000
            device.peers[peer.public_key] = peer

    for line in text.splitlines():
        if not line or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "public_key":
            finish()
            peer, allowed, hs_sec, hs_nsec = PeerState(key_from_hex(value)), [], 0, 0
        elif peer is None:
            if key == "private_key":
                device.private_key = key_from_hex(value)
            elif key == "listen_port":
                device.listen_port = int(value)
        elif key == "preshared_key":
            peer.preshared_key = key_from_hex(value)
        elif key == "endpoint":
            peer.endpoint = value
        elif key == "allowed_ip":
            allowed.append(value)
        elif key == "persistent_keepalive_interval":
            peer.persistent_keepalive = int(value)
        elif key == "rx_bytes":
            peer.rx_bytes = int(value)
        elif key == "tx_bytes":
            peer.tx_bytes = int(value)
        elif key == "last_handshake_time_sec":
            hs_sec = int(value)
        elif key == "last_handshake_time_nsec":
            hs_nsec = int(value)
    finish()
    return device


def _errno_of(answer: str) -> int:
    for line in reversed(answer.splitlines()):
        if line.startswith("errno="):
            return int(line[len("errno="):])
    raise UapiError("UAPI answer without errno line")


def request(path: str, text: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """Send one request on a fresh connection; return the answer (without checking errno)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise UapiError(f"UAPI socket {path} does not answer ({exc.strerror})") from None
        sock.sendall(text.encode())
        chunks: list[bytes] = []
        tail = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            tail = (tail + chunk)[-64:]
            # The answer ends with "errno=N\n\n".
            if tail.endswith(b"\n\n") and b"errno=" in tail.rsplit(b"\n", 3)[-3]:
                break
    return b"".join(chunks).decode()


def get(name: str, directory: str = SOCKET_DIR, timeout: float = TIMEOUT_SECONDS) -> DeviceState:
    answer = request(socket_path(name, directory), "get=1\n\n", timeout)
    errno = _errno_of(answer)
    if errno:
        raise UapiError(f"{name}: UAPI get failed: errno {errno} ({os.strerror(abs(errno))})", errno)
    return parse_get(answer)


def set_device(
    name: str, update: DeviceUpdate, directory: str = SOCKET_DIR, timeout: float = TIMEOUT_SECONDS
) -> None:
    answer = request(socket_path(name, directory), render_set(update), timeout)
    errno = _errno_of(answer)
    if errno:
        raise UapiError(f"{name}: UAPI set failed: errno {errno} ({os.strerror(abs(errno))})", errno)


def answers(name: str, directory: str = SOCKET_DIR, timeout: float = 2.0) -> bool:
    """True if a wireguard-go instance serves NAME's socket."""
    try:
        get(name, directory, timeout)
    except (UapiError, OSError):
        return False
    return True
