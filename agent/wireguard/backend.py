"""One small interface to a WireGuard device, two implementations.

    UserspaceBackend  wireguard-go, one process per interface (started with -f in its own session so it
                      outlives the agent), configured over its UAPI socket
    KernelBackend     the kernel module: `ip link add ... type wireguard`, `wg set`, `wg show NAME dump`

Both speak in DeviceState / DeviceUpdate (agent.wireguard.model), so the driver never knows which it has.
"""

from __future__ import annotations

import abc
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from agent.wireguard import link, uapi
from agent.wireguard.link import CommandError
from agent.wireguard.model import DeviceState, DeviceUpdate, PeerState, normalise_networks

WIREGUARD_GO_ENV = "VPNFLEET_WIREGUARD_GO"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
LOG_MAX_BYTES = 1 << 20
#: Peers per `wg set` command line (keeps argv far below ARG_MAX).
WG_SET_CHUNK = 256


class Backend(abc.ABC):
    #: Stored in the driver's state file: "userspace" or "kernel".
    kind: str = ""

    @abc.abstractmethod
    def create(self, name: str) -> int | None:
        """Create the device (down, unconfigured); return the pid serving it (None: the kernel does)."""

    @abc.abstractmethod
    def destroy(self, name: str, pid: int | None) -> None:
        """Remove the device (and stop its process). Idempotent."""

    @abc.abstractmethod
    def alive(self, name: str, pid: int | None) -> bool:
        """True while the device exists and is served."""

    @abc.abstractmethod
    def get(self, name: str) -> DeviceState: ...

    @abc.abstractmethod
    def set(self, name: str, update: DeviceUpdate) -> None: ...

    def find_pid(self, name: str) -> int | None:
        """The pid serving an existing device that this agent did not start (None: not applicable)."""
        return None


# -- wireguard-go ------------------------------------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    """The one-letter state of a process, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _same_netns(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _serves(pid: int, name: str) -> bool:
    """Is pid a live wireguard-go for interface `name` in this network namespace?"""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    argv = _cmdline(pid)
    return bool(argv) and "wireguard-go" in os.path.basename(argv[0]) and argv[-1] == name and _same_netns(pid)


class UserspaceBackend(Backend):
    kind = "userspace"

    def __init__(self, log_dir: str | Path, binary: str | None = None, socket_dir: str = uapi.SOCKET_DIR) -> None:
        self.log_dir = Path(log_dir)
        self.binary = binary or os.environ.get(WIREGUARD_GO_ENV) or "wireguard-go"
        self.socket_dir = socket_dir
        # Processes this agent started: polled so they are reaped, never left as zombies.
        self._children: dict[int, subprocess.Popen] = {}

    def executable(self) -> str | None:
        return shutil.which(self.binary)

    def create(self, name: str) -> int:
        binary = self.executable()
        if binary is None:
            raise CommandError(f"wireguard-go not found ({self.binary!r}; set {WIREGUARD_GO_ENV})")
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = self.log_dir / f"{name}.log"
        if log_path.exists() and log_path.stat().st_size > LOG_MAX_BYTES:
            os.replace(log_path, log_path.with_suffix(".log.1"))
        env = {**os.environ, "LOG_LEVEL": "error", "WG_PROCESS_FOREGROUND": "1"}
        with open(log_path, "ab") as log_file:
            # Own session: the agent's signals (and its death) never reach the data plane. The log goes to a
            # file, not a pipe, so the process never dies of SIGPIPE when the agent is gone.
            proc = subprocess.Popen(
                [binary, "-f", name],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        self._children[proc.pid] = proc
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._children.pop(proc.pid, None)
                raise CommandError(
                    f"wireguard-go for {name} exited at start (status {proc.returncode}): {_tail(log_path)}"
                )
            if uapi.answers(name, self.socket_dir, timeout=1.0) and link.link_info(name) is not None:
                return proc.pid
            time.sleep(0.02)
        self.destroy(name, proc.pid)
        raise CommandError(f"wireguard-go for {name} did not open its UAPI socket in {START_TIMEOUT_SECONDS:.0f}s")

    def alive(self, name: str, pid: int | None) -> bool:
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            self._children.pop(pid, None)
            return False
        return _serves(pid, name)

    def find_pid(self, name: str) -> int | None:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _serves(int(entry), name):
                return int(entry)
        return None

    def destroy(self, name: str, pid: int | None) -> None:
        if pid is not None and self.alive(name, pid):
            for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 2.0)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if self._wait_gone(name, pid, wait):
                    break
        if pid is not None:
            child = self._children.pop(pid, None)
            if child is not None:
                try:
                    child.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
        if link.link_info(name) is not None:
            link.delete(name)
        path = uapi.socket_path(name, self.socket_dir)
        if os.path.exists(path) and not uapi.answers(name, self.socket_dir, timeout=0.5):
            try:
                os.unlink(path)  # left behind by a killed process
            except FileNotFoundError:
                pass

    def _wait_gone(self, name: str, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive(name, pid):
                return True
            time.sleep(0.02)
        return False

    def get(self, name: str) -> DeviceState:
        return uapi.get(name, self.socket_dir)

    def set(self, name: str, update: DeviceUpdate) -> None:
        uapi.set_device(name, update, self.socket_dir)


def _tail(path: Path, size: int = 600) -> str:
    try:
        data = path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""
    lines = [line for line in data.splitlines() if line.strip() and not line.startswith(("┌", "│", "└"))]
    return " | ".join(lines[-3:])


# -- kernel WireGuard --------------------------------------------------------------------------------------


def parse_dump(text: str) -> DeviceState:
    """DeviceState from `wg show NAME dump` (tab-separated; first line is the interface)."""
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines:
        raise CommandError("wg show dump: empty output")
    private, _public, port, _fwmark = lines[0][:4]
    device = DeviceState(private_key="" if private == "(none)" else private, listen_port=int(port or 0))
    for fields in lines[1:]:
        public, psk, endpoint, allowed, handshake, rx, tx, keepalive = fields[:8]
        device.peers[public] = PeerState(
            public_key=public,
            preshared_key="" if psk == "(none)" else psk,
            allowed_ips=() if allowed in ("(none)", "") else normalise_networks(allowed.split(",")),
            persistent_keepalive=0 if keepalive == "off" else int(keepalive),
            endpoint="" if endpoint == "(none)" else endpoint,
            rx_bytes=int(rx),
            tx_bytes=int(tx),
            last_handshake_ms=int(handshake) * 1000,
        )
    return device


class KernelBackend(Backend):
    kind = "kernel"

    def create(self, name: str) -> None:
        link.add_wireguard(name)
        return None

    def destroy(self, name: str, pid: int | None) -> None:
        if link.link_info(name) is not None:
            link.delete(name)

    def alive(self, name: str, pid: int | None) -> bool:
        info = link.link_info(name)
        return info is not None and info.kind == "wireguard"

    def get(self, name: str) -> DeviceState:
        return parse_dump(link.run(["wg", "show", name, "dump"]))

    def set(self, name: str, update: DeviceUpdate) -> None:
        # Keys go through files (wg reads keys only from files), in a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="vpnfleet-wg-") as tmp:
            counter = iter(range(1 << 30))

            def key_file(b64: str) -> str:
                if not b64:
                    return "/dev/null"  # an empty key file clears a preshared key
                path = os.path.join(tmp, f"k{next(counter)}")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(b64 + "\n")
                return path

            head = ["wg", "set", name]
            if update.listen_port is not None:
                head += ["listen-port", str(update.listen_port)]
            if update.private_key is not None:
                head += ["private-key", key_file(update.private_key)]
            chunks = [update.peers[i : i + WG_SET_CHUNK] for i in range(0, len(update.peers), WG_SET_CHUNK)] or [[]]
            for index, chunk in enumerate(chunks):
                argv = list(head) if index == 0 else ["wg", "set", name]
                for peer in chunk:
                    argv += ["peer", peer.public_key]
                    if peer.remove:
                        argv.append("remove")
                        continue
                    if peer.preshared_key is not None:
                        argv += ["preshared-key", key_file(peer.preshared_key)]
                    if peer.endpoint is not None:
                        argv += ["endpoint", peer.endpoint]
                    if peer.persistent_keepalive is not None:
                        argv += ["persistent-keepalive", str(peer.persistent_keepalive or "off")]
                    if peer.allowed_ips is not None:
                        argv += ["allowed-ips", ",".join(peer.allowed_ips)]
                if len(argv) > 3:
                    link.run(argv)
