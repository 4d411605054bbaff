"""Commands from the controller (tcping, info), answered with one CommandResult each.

Result shapes follow NodePass's /tcping and /info (shared/reference/nodepass-1.14), so the controller can
serve both from one model. tcping refuses loopback, private, link-local and metadata targets (agent.addresses)
unless AgentSettings.allow_private_targets is on.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import platform
import socket
import time
from typing import Callable

import psutil

import agent
from agent.addresses import blocked_reason
from protos import agent_pb2

log = logging.getLogger(__name__)

#: Used when a command carries no timeout.
DEFAULT_TIMEOUT_MS = 5_000
#: tcping dials with this share of the command's timeout, so a slow dial is reported as NodePass does
#: ("i/o timeout" in the TcpingResult) before the command as a whole times out.
TCPING_DIAL_SHARE = 0.9

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "riscv64": "riscv64",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
}


def go_arch(machine: str) -> str:
    """platform.machine() as Go's GOARCH names it (what NodePass reports)."""
    return _ARCH.get(machine.lower(), machine.lower())


def parse_target(target: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; ValueError with a readable reason if malformed."""
    if not target:
        raise ValueError("target is empty; expected host:port")
    if target.startswith("["):
        close = target.find("]")
        if close < 0 or target[close + 1 : close + 2] != ":":
            raise ValueError(f"malformed target {target!r}; expected [ipv6]:port")
        host, port_text = target[1:close], target[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"malformed target {target!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep or not host:
            raise ValueError(f"malformed target {target!r}; expected host:port")
        if ":" in host:
            raise ValueError(f"malformed target {target!r}; write IPv6 addresses as [addr]:port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"malformed target {target!r}: port must be 1..65535")
    return host, int(port_text)


def dial_error(target: str, exc: BaseException) -> str:
    """The error text Go's net.Dial gives, which NodePass returns verbatim."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"dial tcp {target}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        host = parse_target(target)[0]
        return f"dial tcp: lookup {host}: no such host"
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = os.strerror(exc.errno).lower()
        if exc.errno == errno.ECONNREFUSED:
            reason = "connection refused"
        return f"dial tcp {target}: connect: {reason}"
    return f"dial tcp {target}: {exc}"


#: How a refused tcping target is answered (the operator's switch is named, so they know how to allow it).
PRIVATE_TARGETS_OFF = ("tcping to private, loopback and link-local targets is off "
                       "(diagnostics.allow_private_targets)")


async def resolve(host: str, port: int) -> list[tuple[int, int, int, str, tuple]]:
    """getaddrinfo for a TCP connection to host:port (an address literal resolves to itself)."""
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        proto=socket.IPPROTO_TCP)


def refusal(host: str, addresses: list[str]) -> str | None:
    """Why tcping may not reach host, which resolved to addresses (all of them are checked); None if it may."""
    literal = _is_address(host)
    for address in addresses:
        reason = blocked_reason(address)
        if reason is not None:
            what = f"is {reason}" if literal else f"resolves to {address}, {reason}"
            return f"target {host} {what}; {PRIVATE_TARGETS_OFF}"
    return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _connect(infos: list[tuple[int, int, int, str, tuple]]) -> None:
    """Connect to the resolved addresses in turn (never resolving again) until one accepts; close it.
    Raises the first address's error when none does."""
    loop = asyncio.get_running_loop()
    first: OSError | None = None
    for family, type_, proto, _, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
            return
        except OSError as exc:
            first = first or exc
        finally:
            sock.close()
    raise first or OSError("no addresses")


async def tcping(target: str, timeout_s: float, allow_private_targets: bool = False) -> agent_pb2.TcpingResult:
    """Open (and close) a TCP connection to target; measure how long resolving and the handshake took.

    Unless allow_private_targets, a target that is or resolves to a blocked address (agent.addresses:
    loopback, private, link-local and metadata, ...) is refused without a packet sent to it. The connection
    goes only to the addresses that were checked.
    """
    host, port = parse_target(target)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            infos = await resolve(host, port)
            if not allow_private_targets:
                refused = refusal(host, [info[4][0] for info in infos])
                if refused is not None:
                    return agent_pb2.TcpingResult(target=target, connected=False, latency_ms=0, error=refused)
            await _connect(infos)
    except (OSError, TimeoutError) as exc:
        return agent_pb2.TcpingResult(target=target, connected=False, latency_ms=0, error=dial_error(target, exc))
    latency_ms = int((time.monotonic() - started) * 1000)
    return agent_pb2.TcpingResult(target=target, connected=True, latency_ms=latency_ms)


def node_info(
    alias: str, log_level: str, agent_uptime_s: float, cert_path: str, key_path: str
) -> agent_pb2.NodeInfo:
    """The NodePass /info fields, measured on this machine. Blocks ~0.2 s (CPU measurement)."""
    mem = psutil.virtual_memory()
    swap = psutil.swap_memory()
    net = psutil.net_io_counters()
    disk = psutil.disk_io_counters()  # None in some containers
    return agent_pb2.NodeInfo(
        alias=alias,
        os=platform.system().lower(),
        arch=go_arch(platform.machine()),
        cpu=int(round(psutil.cpu_percent(interval=0.2))),
        mem_total=mem.total,
        mem_used=mem.used,
        swap_total=swap.total,
        swap_used=swap.used,
        netrx=net.bytes_recv if net else 0,
        nettx=net.bytes_sent if net else 0,
        diskr=disk.read_bytes if disk else 0,
        diskw=disk.write_bytes if disk else 0,
        sysup=max(0, int(time.time() - psutil.boot_time())),
        ver=agent.__version__,
        name=socket.gethostname(),
        uptime=max(0, int(agent_uptime_s)),
        log=log_level,
        tls="1",  # the agent's only link, to the controller, is always TLS
        crt=cert_path,
        key=key_path,
    )


class CommandRunner:
    """Runs one Command to completion (or its timeout) and produces its CommandResult."""

    capabilities = ("tcping", "info")

    def __init__(
        self,
        alias: str,
        log_level: Callable[[], str],
        cert_path: str = "",
        key_path: str = "",
        allow_private_targets: bool = False,
    ) -> None:
        self.alias = alias
        self._log_level = log_level
        self.cert_path = cert_path
        self.key_path = key_path
        #: AgentSettings.allow_private_targets as last applied (component "agent"); off until then.
        self.allow_private_targets = allow_private_targets
        self._started = time.monotonic()

    def set_allow_private_targets(self, allowed: bool) -> None:
        self.allow_private_targets = allowed

    async def run(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        timeout_ms = command.timeout_ms or DEFAULT_TIMEOUT_MS
        kind = command.WhichOneof("kind")
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                if kind == "tcping":
                    result = await tcping(command.tcping.target, timeout_ms / 1000 * TCPING_DIAL_SHARE,
                                          allow_private_targets=self.allow_private_targets)
                    return agent_pb2.CommandResult(id=command.id, tcping=result)
                if kind == "info":
                    info = await asyncio.to_thread(
                        node_info,
                        self.alias,
                        self._log_level(),
                        time.monotonic() - self._started,
                        self.cert_path,
                        self.key_path,
                    )
                    return agent_pb2.CommandResult(id=command.id, info=info)
                return agent_pb2.CommandResult(id=command.id, error="unknown command")
        except TimeoutError:
            return agent_pb2.CommandResult(id=command.id, error=f"timeout after {timeout_ms} ms")
        except ValueError as exc:  # bad arguments, e.g. a malformed tcping target
            return agent_pb2.CommandResult(id=command.id, error=str(exc))
        except Exception as exc:
            log.exception("command %s (%s) failed", command.id, kind)
            return agent_pb2.CommandResult(id=command.id, error=f"{type(exc).__name__}: {exc}")
