"""The V2Ray (or Xray) process: `-test`, starting it so it outlives the agent, recognising it later, stopping it.

Which binary and command line is the Core's (agent.v2ray.core): `v2ray -config F`, `xray run -config F`.
A started core is remembered as a ProcessRecord (pid, the process's start time from /proc, the boot id, the
config path, and the core and binary it was started as), so a later agent process can tell "our V2Ray, still
running" from "a reused pid" or "some other v2ray": all of pid, start time, boot, the `-config PATH` argument
and the binary (argv[0]) must match.

V2Ray's listeners set SO_REUSEPORT, so a second V2Ray on the same ports starts without complaint and the
kernel then splits connections between the two. stray_processes() finds any V2Ray still running our config
file (e.g. started by an agent that crashed before writing the record) so it can be stopped first.

Privileges: an agent running as root runs V2Ray (and `v2ray -test`) as the data-plane user
(agent.dataplane_user: uid/gid switched by setpriv, which then execs V2Ray, so the pid and the command line
above are V2Ray's own), with no capability but CAP_NET_BIND_SERVICE when an inbound port needs it. Its state
directory is then shared with that user as far as V2Ray needs and no further (prepare_dir(), share()):

    state_dir/            the agent's: search permission only (o+x) added, so V2Ray can reach v2ray/
    state_dir/v2ray/      root, group of the data-plane user, 0750: V2Ray reads, cannot create or replace files
    config.json, last_good.json, candidate.json
                          root, that group, 0640: V2Ray reads its configuration
    access.log, error.log the data-plane user, 0600: V2Ray opens and appends to them itself
    process.json, traffic.json
                          root, 0600: V2Ray can neither read nor change what the agent tracks and counts

Without a data-plane user (the agent is not root) everything stays the agent's own, 0700/0600, as before.
Files an inbound names outside the state directory (TLS certificates and keys, provisioned by the operator)
must be readable by that user too: unreadable_by() says which one is not, before the core is asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterable

import psutil

from agent import dataplane_user
from agent.dataplane_user import DataplaneUser
from agent.v2ray.core import CORES, DEFAULT_CORE, Core
from agent.v2ray.spec import redact_credentials

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
TEST_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
#: Modes in the state directory when V2Ray runs as the data-plane user (see the module docstring).
SHARED_DIR_MODE = 0o750
SHARED_FILE_MODE = 0o640
OWNED_LOG_MODE = 0o600


class ConfigRejected(ValueError):
    """`v2ray -test` (or `xray run -test`) refused a configuration (the message is the core's, redacted)."""


@dataclasses.dataclass(frozen=True)
class ProcessRecord:
    """A V2Ray or Xray this driver started."""

    pid: int
    #: Field 22 of /proc/PID/stat (clock ticks after boot): differs for a later process with the same pid.
    start_ticks: int
    boot_id: str
    config: str
    #: The core it runs (agent.v2ray.core); records from before cores were V2Ray's.
    core: str = DEFAULT_CORE.name
    #: argv[0] it was started with; "" (records from before cores): not checked.
    binary: str = ""

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProcessRecord:
        item = json.loads(data)
        core = str(item.get("core") or DEFAULT_CORE.name)
        if core not in CORES:
            raise ValueError(f"unknown core {core!r}")
        return cls(int(item["pid"]), int(item["start_ticks"]), str(item["boot_id"]), str(item["config"]),
                   core, str(item.get("binary") or ""))


def boot_id() -> str:
    try:
        return Path(BOOT_ID_PATH).read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (index 0 is the state), None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int | None:
    """When pid started (clock ticks after boot); None if it does not exist or is a zombie."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def runs_config(argv: list[str], config: str) -> bool:
    """Was argv started with `-config config` (anywhere after the binary: `xray run -config F` too)? The config
    lives in the agent's private state directory, so that alone marks a core of this driver, whatever the
    binary is called (stray_processes() relies on that to find either core)."""
    return any(a in ("-config", "--config", "-c") and b == config for a, b in zip(argv, argv[1:]))


def is_running(record: ProcessRecord) -> bool:
    """Is the recorded process alive, and still the same process (not a reused pid), of the recorded binary?"""
    if record.boot_id != boot_id():
        return False
    if start_ticks(record.pid) != record.start_ticks:
        return False
    argv = cmdline(record.pid)
    # setpriv execs the core with the argv it was given: argv[0] is the binary exactly as launched.
    return runs_config(argv, record.config) and (not record.binary or argv[:1] == [record.binary])


def stray_processes(config: str, exclude: int | None = None) -> list[tuple[int, int]]:
    """(pid, start ticks) of live core processes (either core) running this config file, other than `exclude`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        pid = int(entry)
        if runs_config(cmdline(pid), config):
            ticks = start_ticks(pid)
            if ticks is not None:
                found.append((pid, ticks))
    return found


def check_config(binary: str, path: Path, timeout: float = TEST_TIMEOUT_SECONDS,
                 user: DataplaneUser | None = None, core: Core = DEFAULT_CORE) -> None:
    """Run the core's config test on path (`v2ray -test -config path`, `xray run -test -config path`; as user,
    without capabilities: it binds nothing); raise ConfigRejected if the core refuses it (exit status not 0).

    A test that does not finish in time raises TimeoutError instead: that says nothing about the config (a busy
    node), so unlike a rejection it is worth trying again.
    """
    try:
        done = subprocess.run(
            dataplane_user.command(user, core.test_argv(binary, str(path))),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"`{core.name} -test` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        reason = _reason(done.stdout + done.stderr)
        if user is not None and reason.startswith("setpriv:"):  # the core never ran: says nothing about the config
            raise RuntimeError(f"cannot run {core.title} as {user.name}: {reason}")
        if "permission denied" in reason:  # a file it may not read: fixable, unlike a rejected config
            raise RuntimeError(f"{core.title} cannot read what its configuration needs "
                               f"(exit {done.returncode}): {reason}")
        raise ConfigRejected(f"{core.title} rejected the configuration (exit {done.returncode}): {reason}")


def _reason(output: str) -> str:
    """The lines of the core's output that explain a failure (not its banner), redacted (Xray echoes a
    REALITY key it refuses)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    panic = next((line for line in lines if line.startswith("panic: ")), None)
    if panic is not None:  # what went wrong, not the goroutine trace after it
        return redact_credentials(panic)[:1000]
    skip = ("V2Ray ", "Xray ", "A unified platform", "Configuration OK")
    useful = [line for line in lines if not line.startswith(skip) and "Reading config:" not in line]
    return redact_credentials(" | ".join((useful or lines)[-3:]))[:1000] or "no output"


def launch(binary: str, config: Path, log_path: Path, user: DataplaneUser | None = None,
           bind_privileged_ports: bool = False, core: Core = DEFAULT_CORE) -> subprocess.Popen:
    """Start the core on config (`v2ray -config config`, `xray run -config config`) in its own session,
    stdout/stderr appended to log_path.

    Its own session: the agent's signals (and its death) never reach the data plane. The output goes to a
    file, not a pipe, so the core never dies of SIGPIPE once the agent is gone. As user (if not None), with
    CAP_NET_BIND_SERVICE only if bind_privileged_ports; the returned pid is the core's (setpriv execs it).
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        return subprocess.Popen(
            dataplane_user.command(user, core.run_argv(binary, str(config)), bind_privileged_ports),
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=str(config.parent),
        )
    finally:
        os.close(fd)


def prepare_dir(directory: Path, user: DataplaneUser | None, log_files: Iterable[Path] = ()) -> None:
    """Create directory (0700) and, with a data-plane user, share it with that user for reading (0750, its
    group), make its parent searchable for it if it is not, and pre-create log_files owned by it (0600).

    Idempotent: run before every `v2ray -test` and start (systemd resets the state directory's mode when the
    agent starts; another data-plane user may have been configured). Raises PermissionError if a directory
    further up (not the agent's) keeps the user from reaching directory: V2Ray never falls back to root.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user is None:
        return
    parent = directory.parent
    st = parent.stat()
    if not dataplane_user.can_search(st, user):
        os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)  # search only: no listing, no reading
    os.chown(directory, os.geteuid(), user.gid)
    os.chmod(directory, SHARED_DIR_MODE)
    for path in log_files:
        _give_log(path, user)
    blocked = dataplane_user.blocked_directory(directory, user)
    if blocked is not None:
        raise PermissionError(
            f"V2Ray runs as {user.name}, which cannot reach {directory}: it may not search {blocked} "
            f"(give that directory o+x, or use a state_dir under a directory it can search)"
        )


def _give_log(path: Path, user: DataplaneUser) -> None:
    """A log file V2Ray opens itself: the user's own, 0600. The directory is not writable by the user, so
    nothing it made can sit at this path; O_NOFOLLOW and O_NONBLOCK make sure of it (no symlink, no FIFO)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 OWNED_LOG_MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermissionError(f"{path} is not a regular file")
        os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, OWNED_LOG_MODE)
    finally:
        os.close(fd)


def share(path: Path, user: DataplaneUser | None) -> None:
    """A file V2Ray reads (its configuration, written 0600 by the agent): root, the user's group, 0640.
    Group first, mode second: the file is never readable by anyone but root and that group."""
    if user is None:
        return
    os.chown(path, -1, user.gid)
    os.chmod(path, SHARED_FILE_MODE)


def unreadable_by(paths: Iterable[str], user: DataplaneUser | None) -> str | None:
    """The first of paths (absolute, e.g. TLS certificate and key files) that user could not read, with the
    reason; None if user can read them all. user None: the core runs as the agent's own user, whose access
    is asked of the kernel.

    Permission bits only, as setpriv leaves the user: its uid and primary group, no supplementary groups (an
    ACL could say otherwise). Symbolic links are followed (ACME clients link live/ to archive/).
    """
    for path in paths:
        if user is None:
            if not os.access(path, os.R_OK):
                reason = "no such file" if not os.path.exists(path) else "the agent's user may not read it"
                return f"{path}: {reason}"
            continue
        real = Path(os.path.realpath(path))
        blocked = dataplane_user.blocked_directory(real.parent, user)
        if blocked is not None:
            return f"{path}: {user.name} may not search {blocked}"
        try:
            st = real.stat()
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        if not stat.S_ISREG(st.st_mode):
            return f"{path}: not a regular file"
        if st.st_uid == user.uid:
            readable = st.st_mode & stat.S_IRUSR
        elif st.st_gid == user.gid:
            readable = st.st_mode & stat.S_IRGRP
        else:
            readable = st.st_mode & stat.S_IROTH
        if not readable:
            return f"{path}: {user.name} may not read it (give it group {user.group} and mode 0640)"
    return None


def _still(pid: int, ticks: int) -> bool:
    """Is pid alive (not a zombie) and still the process that started at `ticks`?"""
    return start_ticks(pid) == ticks


def terminate(pid: int, ticks: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, then SIGKILL after timeout; a pid that now names another process is never signalled.

    Returns once the process is gone or a zombie (our child: the caller reaps it with Popen.wait()).
    """
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if not _still(pid, ticks):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _still(pid, ticks):
                return
            time.sleep(0.02)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a TCP listener bind host:port right now (without SO_REUSEPORT, so a V2Ray there counts as busy)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as Go's listeners set it: connections in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(avoid: set[int] = frozenset()) -> int:
    """A free TCP port on 127.0.0.1 chosen by the kernel, not one of `avoid`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def listening_ports(pid: int) -> set[int]:
    """TCP ports pid listens on (empty if it is gone)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
