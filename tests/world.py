"""The network the test suite runs in: a namespace of its own (the "world"), with one "internet" host.

As root, the whole pytest process moves into a fresh network namespace when the session starts
(tests/conftest.py). Its loopback is the suite's own; every process a test starts afterwards (controllers,
agents, V2Ray, moto, PostgreSQL) inherits it, so no packet of the suite can reach a real address of the
machine, not even a link-local one like 169.254.169.254 (something in this sandbox answers there).

One veth pair leads from the world (203.0.113.1) to the "internet": a namespace whose only address is the
documentation address 203.0.113.10, serving /bytes/N over HTTP and, on port 8443, a TLS 1.3 site for
reality.test: the REALITY target of the test nodes. A subscriber's tunnel may not reach
loopback (the nodes' egress policy), so traffic through a tunnel downloads from there.

Not root, or VPNFLEET_TESTS_HOST_NETWORK=1: the suite stays in the machine's namespace and the tests that
need the internet host skip, saying why.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
INTERNET_ADDRESS = "203.0.113.10"
WORLD_ADDRESS = "203.0.113.1"
#: The world's end of the veth to the internet host (what a capture of "the internet side" listens on).
WORLD_DEVICE = "vw-world"
INTERNET_PORT = 8080
#: A TLS 1.3 site on the internet host: the REALITY target (dest) of the test nodes (tests/controller_process.py).
REALITY_PORT = 8443
REALITY_SERVER_NAME = "reality.test"
REALITY_DEST = f"{INTERNET_ADDRESS}:{REALITY_PORT}"
_CLONE_NEWNET = 0x40000000


class World:
    """The namespaces of one test session; built by enter(), removed by leave()."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.world, self.internet = f"vpf-world-{tag}", f"vpf-inet-{tag}"
        self.servers: list[subprocess.Popen] = []
        self.reason = ""  # why there is no world, when there is none

    def enter(self) -> bool:
        """Make the namespaces and move this process into the world. False (reason set) if it cannot."""
        if os.environ.get("VPNFLEET_TESTS_HOST_NETWORK") == "1":
            self.reason = "VPNFLEET_TESTS_HOST_NETWORK=1: no internet host in the machine's own network"
            return False
        if os.geteuid() != 0 or shutil.which("ip") is None:
            self.reason = "needs root and iproute2 (the internet host lives in a network namespace)"
            return False
        try:
            for ns in (self.world, self.internet):
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "add", WORLD_DEVICE, "netns", self.world, "type", "veth",
                 "peer", "name", "vw-inet", "netns", self.internet)
            for ns, dev, address in ((self.world, WORLD_DEVICE, WORLD_ADDRESS), (self.internet, "vw-inet", INTERNET_ADDRESS)):
                _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
            fd = os.open(f"/run/netns/{self.world}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the test world failed")
            finally:
                os.close(fd)
        except (OSError, RuntimeError) as exc:
            self.reason = f"cannot build the test network: {exc}"
            self.leave()
            return False
        return True

    def url(self, size: int) -> str:
        """A URL on the internet host answering `size` bytes (its servers start on first use)."""
        if not self.servers:
            for argv in (["serve", INTERNET_ADDRESS, str(INTERNET_PORT)],
                         ["serve-tls", INTERNET_ADDRESS, str(REALITY_PORT), REALITY_SERVER_NAME]):
                self.servers.append(subprocess.Popen(
                    ["ip", "netns", "exec", self.internet, sys.executable, "-m", "tests.v2ray_lab", *argv],
                    cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            _wait_http(f"http://{INTERNET_ADDRESS}:{INTERNET_PORT}/bytes/1")
            _wait_port(INTERNET_ADDRESS, REALITY_PORT)
        return f"http://{INTERNET_ADDRESS}:{INTERNET_PORT}/bytes/{size}"

    def leave(self) -> None:
        """Stop the server and remove both namespaces (the world lives on while this process runs in it)."""
        for server in self.servers:
            if server.poll() is None:
                server.kill()
                server.wait(5)
        for ns in (self.internet, self.world):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                if int(pid) != os.getpid():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0, trust_env=False).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: The session's world (tests/conftest.py enters and leaves it).
WORLD = World()


def enter_for_benchmark() -> World:
    """Benchmarks whose tunnels carry traffic run in a world too: call first thing (before any process is
    started), as root. Exits with the reason when that cannot be; the world is removed at exit."""
    import atexit

    world = World()
    if not world.enter():
        raise SystemExit(f"this benchmark carries traffic through tunnels, which may not reach loopback: {world.reason}")
    atexit.register(world.leave)
    return world
