"""The ``local`` provider: every node is a ``vpnfleet-agent`` process on this machine.

Each node gets a directory DATA_DIR/local-nodes/<node uuid>/ holding what cloud-init would have written on a
real machine: the agent config (taken from the rendered user data itself, only its state directory moved
into the node directory), the agent's state, a pid file and its output. Agents run in their own session, so
like real nodes they keep running when the controller stops or restarts; the controller adopts them again
through their pid files.

Everything a node runs (the agent, V2Ray, wireguard-go) carries NODE_ENV=<node dir> in its environment, which
children inherit whatever session or user they move to: stopping the "machine" stops every one of them.
Node directories are private (0700, files 0600): the agent config holds the enrollment token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

from controller.cloudinit import agent_config_from_user_data
from controller.providers.base import RUNNING, STOPPED, Instance, LaunchRequest, ProviderError

log = logging.getLogger("vpnfleet.local")

INSTANCE_PREFIX = "local-"
STOP_TIMEOUT = 10.0
#: set in every local agent's environment (and so its data plane's): which node's "machine" a process is on
NODE_ENV = "VPNFLEET_LOCAL_NODE_DIR"


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_of(node_dir: Path, program: str | None = None) -> list[int]:
    """Pids of the processes of node_dir's "machine": those whose environment carries NODE_ENV=node_dir (what
    the agent and everything it starts inherit, e.g. wireguard-go, whose command line names no file) or whose
    command line names a file in node_dir (agents started before NODE_ENV); optionally only those whose
    program is named `program`, e.g. "v2ray". A node's data-plane processes run detached from its agent, like
    on a real machine; this is how the "machine" finds them."""
    markers = {f"{node_dir}/".encode(), f"{node_dir.resolve()}/".encode()}
    env_markers = {f"{NODE_ENV}={node_dir}\0".encode(), f"{NODE_ENV}={node_dir.resolve()}\0".encode()}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if not any(marker in cmdline for marker in markers) and not _environ_has(proc, env_markers):
            continue
        if program is None or Path(cmdline.split(b"\0")[0].decode(errors="replace")).name == program:
            pids.append(int(proc.name))
    return sorted(pids)


def _environ_has(proc: Path, markers: set[bytes]) -> bool:
    try:
        environ = b"\0" + (proc / "environ").read_bytes()
    except OSError:  # gone, or not ours to read (then not ours to kill either)
        return False
    return any(b"\0" + marker in environ for marker in markers)


def kill_processes_of(node_dir: Path) -> list[int]:
    """SIGKILL every process of processes_of(node_dir); returns the pids killed."""
    killed = []
    for pid in processes_of(node_dir):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except OSError:
            pass
    return killed


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class LocalProvider:
    name = "local"

    def __init__(self, base_dir: Path, python: str = sys.executable) -> None:
        # Absolute: agents run with their node directory as cwd, so a relative path would point nowhere.
        self.base_dir = base_dir.resolve()
        self._python = python

    # -- paths and processes --------------------------------------------------------------------------------
    def node_dir(self, node_id: str) -> Path:
        return self.base_dir / node_id

    @staticmethod
    def instance_id(node_id: str) -> str:
        return INSTANCE_PREFIX + node_id

    def _dir_of(self, instance_id: str) -> Path:
        if not instance_id.startswith(INSTANCE_PREFIX):
            raise ProviderError(f"not a local instance id: {instance_id}")
        return self.node_dir(instance_id[len(INSTANCE_PREFIX):])

    @staticmethod
    def _pid(node_dir: Path) -> int | None:
        """The pid in the pid file if that process is alive and is this node's agent."""
        try:
            pid = int((node_dir / "agent.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        config = str(node_dir / "agent.yaml").encode()
        return pid if config in cmdline else None

    def _instance(self, node_dir: Path) -> Instance:
        state = RUNNING if self._pid(node_dir) else STOPPED
        return Instance(instance_id=INSTANCE_PREFIX + node_dir.name, state=state, public_ip="127.0.0.1",
                        private_ip="127.0.0.1", node_id=node_dir.name)

    def _spawn(self, node_dir: Path) -> None:
        self._make_reachable(node_dir)
        fd = os.open(node_dir / "agent.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            proc = subprocess.Popen(
                [self._python, "-m", "agent", "--config", str(node_dir / "agent.yaml")],
                stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                start_new_session=True,  # like a real node: survives the controller
                cwd=node_dir, env={**os.environ, NODE_ENV: str(node_dir)},
            )
        finally:
            os.close(fd)
        _write_private(node_dir / "agent.pid", f"{proc.pid}\n")
        log.info("started agent for node %s (pid %d)", node_dir.name, proc.pid)

    def _make_reachable(self, node_dir: Path | None = None) -> None:
        """base_dir 0700; as root, search-only (o+x) on it, the data dir above it and the node's own directory: a
        root agent runs V2Ray as the unprivileged data-plane user, which must pass through them to its
        directory under the node's state. Search lets no one list a directory or read a private file in it."""
        self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() != 0:
            return
        for directory in (self.base_dir.parent, self.base_dir, *([node_dir] if node_dir else [])):
            mode = stat.S_IMODE(directory.stat().st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(directory, mode | stat.S_IXOTH)

    async def _kill(self, node_dir: Path) -> None:
        """Stop the "machine": its agent, then everything the agent left running for the data plane (V2Ray,
        wireguard-go), until none is left (a process may be forking as we look)."""
        await self._kill_agent(node_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while kill_processes_of(node_dir) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        left = processes_of(node_dir)
        if left:
            log.warning("node %s: processes %s survived SIGKILL", node_dir.name, left)

    async def _kill_agent(self, node_dir: Path) -> None:
        pid = self._pid(node_dir)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while self._pid(node_dir) is not None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._pid(node_dir) is not None:
            os.kill(pid, signal.SIGKILL)
        log.info("stopped agent for node %s (pid %d)", node_dir.name, pid)

    # -- Provider -----------------------------------------------------------------------------------------
    def service_ports(self, defaults: dict[str, int]) -> tuple[str, dict[str, int]]:
        """All local nodes share this machine: each gets its own free loopback ports."""
        return "127.0.0.1", {name: free_tcp_port() for name in defaults}

    async def launch(self, request: LaunchRequest) -> Instance:
        node_dir = self.node_dir(request.node_id)
        if (node_dir / "agent.yaml").exists():
            if self._pid(node_dir) is None:
                self._spawn(node_dir)
            return self._instance(node_dir)
        config = agent_config_from_user_data(request.user_data)
        config.state_dir = str(node_dir / "state")
        self._make_reachable()
        node_dir.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(node_dir / "agent.yaml.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config.to_yaml())
        os.replace(node_dir / "agent.yaml.tmp", node_dir / "agent.yaml")
        self._spawn(node_dir)
        return self._instance(node_dir)

    async def find(self, region: str, node_id: str) -> Instance | None:
        node_dir = self.node_dir(node_id)
        return self._instance(node_dir) if (node_dir / "agent.yaml").exists() else None

    async def describe(self, region: str, instance_id: str) -> Instance | None:
        node_dir = self._dir_of(instance_id)
        return self._instance(node_dir) if (node_dir / "agent.yaml").exists() else None

    async def list_instances(self, region: str) -> list[Instance]:
        if not self.base_dir.is_dir():
            return []
        return [self._instance(d) for d in sorted(self.base_dir.iterdir()) if (d / "agent.yaml").exists()]

    async def start(self, region: str, instance_id: str) -> None:
        node_dir = self._dir_of(instance_id)
        if not (node_dir / "agent.yaml").exists():
            raise ProviderError(f"local instance {instance_id} does not exist")
        if self._pid(node_dir) is None:
            self._spawn(node_dir)

    async def stop(self, region: str, instance_id: str) -> None:
        await self._kill(self._dir_of(instance_id))

    async def reboot(self, region: str, instance_id: str) -> None:
        await self.stop(region, instance_id)
        await self.start(region, instance_id)

    async def terminate(self, region: str, instance_id: str) -> None:
        node_dir = self._dir_of(instance_id)
        await self._kill(node_dir)
        shutil.rmtree(node_dir, ignore_errors=True)

    async def close(self) -> None:
        """Agents are left running on purpose: they are the fleet, not the controller's children."""
