"""The controller's files are private: umask 077, a 0700 data directory, 0600 database files, and key files that
no other user can read (checked at start: the controller refuses to run rather than serve with a leaked key).

Only what another user could *read* or *change* matters: a directory may carry search permission for others
(``o+x``, e.g. so the local nodes' unprivileged data-plane user can reach its own V2Ray directory); that lets
nobody list it or read a 0600 file in it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

#: what group and others may never have on a private file or directory (read and write; search is allowed)
EXPOSING_BITS = 0o066
#: the database files SQLite keeps beside vpnfleet.db
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


class PrivateFileError(RuntimeError):
    """A file that must be private is not (the message names it and says how to fix it)."""


def restrict_umask() -> int:
    """umask 077: every file and directory the controller creates from now on is its own (returns the old one)."""
    return os.umask(0o077)


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory 0700, or make an existing one 0700 (an install from before private files, or a
    `mkdir` under umask 022). The local provider gives it back search for others where its nodes need it."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _tighten(data_dir, 0o077)


def tighten_database(db_file: Path) -> None:
    """The SQLite database and its WAL/SHM files 0600 (older controllers left them 0644: a WireGuard private
    key could be grepped out of them)."""
    for suffix in DB_SUFFIXES:
        _tighten(db_file.with_name(db_file.name + suffix))


def tighten_tree(directory: Path) -> None:
    """Take group/other read and write off directory and everything under it (search bits are kept)."""
    if not directory.is_dir():
        return
    _tighten(directory)
    for path in directory.rglob("*"):
        _tighten(path)


def check_key_files(paths: Iterable[Path]) -> None:
    """Refuse (PrivateFileError naming the file) a key file that another user can read or replace: group/other
    permission bits, or another owner. Missing files are fine (they are created 0600 later)."""
    uid = os.geteuid()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise PrivateFileError(f"key file {path} is accessible to other users (mode {mode:04o}); "
                                   f"fix it with `chmod 600 {path}` (and replace the key if others may have read it)")
        if st.st_uid != uid:
            raise PrivateFileError(f"key file {path} belongs to uid {st.st_uid}, not to the controller's uid {uid}; "
                                   f"fix it with `chown {uid} {path}`")


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a temp file created with ``mode`` and renamed over path: never torn, never readable by others."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_private(path: Path) -> bool:
    """No read or write for group and others (search on a directory allowed)."""
    return stat.S_IMODE(os.stat(path).st_mode) & EXPOSING_BITS == 0


def _tighten(path: Path, bits: int = EXPOSING_BITS) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        return  # never follow a link, never touch what is not ours
    mode = stat.S_IMODE(st.st_mode)
    if mode & bits:
        os.chmod(path, mode & ~bits)
