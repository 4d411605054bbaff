"""The unprivileged system user that data-plane processes (V2Ray; NodePass later) run as.

The agent stays root (WireGuard interfaces and firewall rules need it); the processes that face subscribers do
not. resolve() names the user: $VPNFLEET_DATAPLANE_USER, default `vpnfleet-dp` (cloud-init creates it; an
agent running as root creates it itself if it is missing: a system user with its own group, no home, no
shell). An agent that is not root (unit tests, developers) cannot switch users: resolve() returns None and
the data plane runs as the agent's own user, as before.

command() wraps a data-plane command line in util-linux's `setpriv`, which changes uid/gid, drops every
supplementary group, empties the capability bounding, inheritable and ambient sets, sets no_new_privs, and
then execs the program: the pid and /proc/PID/cmdline are the program's own. Only a process that must bind a
port below the kernel's unprivileged-port start (ip_unprivileged_port_start, normally 1024) keeps one
capability, CAP_NET_BIND_SERVICE, as an ambient capability (also its only bounding and inheritable bit).

Why setpriv and not subprocess's user=/group=/extra_groups=[]: those drop the uid but leave the full
capability bounding set and no no_new_privs flag (a set-uid binary run by the process could become root
again), and an ambient capability cannot be kept that way without a preexec_fn, which is unsafe in a
process with threads. One code path with setpriv covers both cases.

File capabilities: Debian's v2ray package gives /usr/bin/v2ray `cap_net_bind_service=ep` (its postinst runs
setcap). The kernel refuses to execute a binary whose file capabilities are outside the bounding set (EPERM),
and no_new_privs does not stop them on every kernel, so such a binary holds that capability whatever the
agent asks. command() therefore keeps the binary's own file capabilities in the bounding set (only
CAP_NET_BIND_SERVICE is accepted; any other is refused), says so once in a warning, and cloud-init removes
the file capability on nodes (`setcap -r`), so that V2Ray holds none unless a port needs it.
"""

from __future__ import annotations

import dataclasses
import grp
import logging
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

DEFAULT_USER = "vpnfleet-dp"
USER_ENV = "VPNFLEET_DATAPLANE_USER"
#: What useradd accepts on Debian (NAME_REGEX), at most 32 characters.
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
DEFAULT_UNPRIVILEGED_PORT_START = 1024
CAP_NET_BIND_SERVICE = "net_bind_service"
#: The only capability a data-plane process may hold, by its bit number.
_ALLOWED_CAPS = {10: CAP_NET_BIND_SERVICE}
_FILE_CAPS_XATTR = "security.capability"

_lock = threading.Lock()
_logged: set[tuple[str, str]] = set()


class DataplaneUserError(RuntimeError):
    """The data-plane user cannot be used (bad name, is root, cannot be created, setpriv is missing)."""


@dataclasses.dataclass(frozen=True)
class DataplaneUser:
    name: str
    uid: int
    #: Its primary group (useradd --user-group: a group of the same name).
    gid: int
    group: str


def configured_name() -> str:
    """$VPNFLEET_DATAPLANE_USER, else DEFAULT_USER."""
    return os.environ.get(USER_ENV, "").strip() or DEFAULT_USER


def _once(key: str, name: str, level: int, message: str, *args: object) -> None:
    with _lock:
        if (key, name) in _logged:
            return
        _logged.add((key, name))
    log.log(level, message, *args)


def _lookup(name: str) -> DataplaneUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return DataplaneUser(name, entry.pw_uid, entry.pw_gid, group)


def _create(name: str) -> None:
    """useradd a system user with a group of the same name, no home, no login shell."""
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
            "--user-group", name]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneUserError(f"cannot create the data-plane user {name!r}: {exc}") from None
    # 9: "already exists" (another process created it meanwhile): the lookup after this decides.
    if done.returncode not in (0, 9):
        reason = (done.stderr or done.stdout).strip()[:300] or f"exit {done.returncode}"
        raise DataplaneUserError(f"cannot create the data-plane user {name!r}: {reason}")


def resolve(name: str | None = None) -> DataplaneUser | None:
    """The user data-plane processes run as; None if the agent is not root (they run as the agent's user).

    Creates the user if it is missing (idempotent; logged once). Blocking (it may run useradd): call it in a
    thread from async code. Raises DataplaneUserError if the user cannot be used.
    """
    name = name or configured_name()
    if os.geteuid() != 0:
        _once("not-root", name, logging.INFO,
              "the agent is not root: data-plane processes run as its own user, not as %s", name)
        return None
    if not _NAME.fullmatch(name):
        raise DataplaneUserError(f"${USER_ENV} {name!r} is not a valid user name")
    user = _lookup(name)
    if user is None:
        with _lock:  # one useradd at a time from this process
            user = _lookup(name)
            if user is None:
                _create(name)
                user = _lookup(name)
                if user is None:
                    raise DataplaneUserError(f"useradd succeeded but there is no user {name!r}")
                log.warning("created the system user %s (uid %d, group %s) that data-plane processes run as",
                            name, user.uid, user.group)
    if user.uid == 0 or user.gid == 0:
        raise DataplaneUserError(f"the data-plane user {name!r} has uid/gid 0: it must be an unprivileged user")
    if user.group != name:
        _once("shared-group", name, logging.WARNING,
              "the data-plane user %s has primary group %s (not its own): files for it are shared with that group",
              name, user.group)
    return user


# -- running as the user --------------------------------------------------------------------------------


def unprivileged_port_start() -> int:
    """The lowest port an unprivileged process may bind (net.ipv4.ip_unprivileged_port_start)."""
    try:
        return int(UNPRIVILEGED_PORT_START.read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_UNPRIVILEGED_PORT_START


def needs_bind_capability(ports: Iterable[int]) -> bool:
    """Does binding these ports take CAP_NET_BIND_SERVICE?"""
    start = unprivileged_port_start()
    return any(0 < port < start for port in ports)


def file_capabilities(binary: str) -> set[str]:
    """The permitted file capabilities of binary (found on PATH like execvp does): names for the allowed
    ones, `cap_N` for any other; empty if it has none or cannot be read."""
    path = shutil.which(binary) or binary
    try:
        data = os.getxattr(path, _FILE_CAPS_XATTR)
    except OSError:
        return set()
    if len(data) < 12:
        return set()
    # struct vfs_cap_data: le32 magic_etc, then {le32 permitted, le32 inheritable} x 1 (revision 1) or x 2
    words = struct.unpack_from(f"<{(len(data) - 4) // 4}I", data, 4)
    permitted = words[0] | ((words[2] << 32) if len(words) >= 4 else 0)
    return {_ALLOWED_CAPS.get(bit, f"cap_{bit}") for bit in range(64) if permitted >> bit & 1}


def command(user: DataplaneUser | None, argv: Sequence[str], bind_privileged_ports: bool = False) -> list[str]:
    """argv run as user with no capabilities (CAP_NET_BIND_SERVICE alone if bind_privileged_ports);
    argv unchanged if user is None (the agent is not root: the process runs as the agent's own user).

    A binary with file capabilities keeps them in its bounding set (see the module docstring); one with a
    file capability other than CAP_NET_BIND_SERVICE is refused (DataplaneUserError).
    """
    if user is None:
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise DataplaneUserError("setpriv (util-linux) is needed to run the data plane as an unprivileged user")
    wanted = {CAP_NET_BIND_SERVICE} if bind_privileged_ports else set()
    on_file = file_capabilities(argv[0])
    if on_file - set(_ALLOWED_CAPS.values()):
        raise DataplaneUserError(f"{argv[0]} carries file capabilities {', '.join(sorted(on_file))}: a data-plane "
                                 f"process may hold none but {CAP_NET_BIND_SERVICE} (remove them: setcap -r)")
    if on_file - wanted:
        _once("file-caps", argv[0], logging.WARNING,
              "%s carries the file capability %s (Debian's package sets it): the kernel runs it only with that "
              "capability allowed, so it may hold it even where no port needs it; `setcap -r %s` removes it",
              argv[0], ", ".join(sorted(on_file - wanted)), shutil.which(argv[0]) or argv[0])

    def caps(names: set[str]) -> str:
        return ",".join(["-all", *(f"+{name}" for name in sorted(names))])

    return [
        setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
        f"--inh-caps={caps(wanted)}", f"--ambient-caps={caps(wanted)}", f"--bounding-set={caps(wanted | on_file)}",
        "--no-new-privs", "--", *argv,
    ]


# -- files the user must reach --------------------------------------------------------------------------


def can_search(st: os.stat_result, user: DataplaneUser) -> bool:
    """Can user (no supplementary groups: setpriv clears them) search a directory with this stat?
    Permission bits only (an ACL could say otherwise; the agent sets none)."""
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocked_directory(directory: Path, user: DataplaneUser) -> Path | None:
    """The first directory from / down to directory (included) that user cannot search, None if none."""
    directory = Path(directory).absolute()
    for path in [*reversed(directory.parents), directory]:
        try:
            st = path.stat()
        except OSError:
            return path
        if not can_search(st, user):
            return path
    return None
