"""Seed 000's local V2Ray management: keep a V2Ray on the controller's machine relaying to the fleet.

The operator points ``v2ray.local_config_path`` at the config of a V2Ray they run themselves. vpnfleet
owns only its own parts of that file, and leaves every other byte of meaning alone:

* one VMess outbound per running node, tagged ``vpnfleet-node-<node_id>``, after the operator's outbounds;
* a ``routing.balancers`` entry ``vpnfleet`` selecting those outbounds by tag prefix;
* a catch-all rule sending TCP and UDP to that balancer, appended only if no rule uses it yet (the
  operator may route only some traffic to it with a rule of their own; then theirs is left in charge).

With no node left, the outbounds and vpnfleet's rule go; the balancer goes too unless an operator rule
still names it (V2Ray refuses a rule naming a missing balancer; an empty balancer is valid, and its
traffic falls back to the default outbound).

A change is written only after ``v2ray -test`` accepted it, with a timestamped backup of the previous
file, by an atomic rename that keeps the file's mode; then the reload command (e.g. ``sudo systemctl
restart v2ray``) runs. The file is never rewritten when it could not be parsed, and never when nothing
changed. UUIDs never reach the log, nor the text of a :class:`RelayError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import shlex
import signal
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

TAG_PREFIX = "vpnfleet-node-"
BALANCER_TAG = "vpnfleet"
BALANCER = {"tag": BALANCER_TAG, "selector": [TAG_PREFIX]}
CATCH_ALL_RULE = {"type": "field", "network": "tcp,udp", "balancerTag": BALANCER_TAG}
OUTPUT_LIMIT = 4000  # characters of a command's output kept in an error message
_BACKUP_STAMP = "%Y%m%dT%H%M%S.%fZ"  # sorts in time order as text


class RelayError(Exception):
    """The local V2Ray config could not be read, validated, written or reloaded."""


@dataclass(frozen=True)
class RelayNode:
    """A running node the relay forwards to over VMess (``uuid`` is the relay's credential on that node)."""

    node_id: str
    name: str
    host: str
    port: int
    uuid: str

    def __post_init__(self) -> None:
        if not self.node_id or any(c.isspace() for c in self.node_id):
            raise ValueError(f"node_id must be a non-empty word, not {self.node_id!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port must be an integer 1..65535, not {self.port!r}")
        if not self.host.strip("[]"):
            raise ValueError("host must not be empty")

    @property
    def tag(self) -> str:
        """The outbound tag vpnfleet manages for this node."""
        return TAG_PREFIX + self.node_id

    def outbound(self) -> dict[str, Any]:
        """The V2Ray outbound that reaches this node."""
        user = {"id": self.uuid, "alterId": 0, "security": "auto"}
        return {
            "tag": self.tag,
            "protocol": "vmess",
            "settings": {"vnext": [{"address": self.host.strip("[]"), "port": self.port, "users": [user]}]},
        }


def _is_managed(outbound: object) -> bool:
    return isinstance(outbound, dict) and str(outbound.get("tag", "")).startswith(TAG_PREFIX)


def _list_at(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    """``parent[key]`` as a list (missing = empty); anything else is the operator's to fix."""
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise RelayError(f"{where} must be a JSON array, not {type(value).__name__}")
    return value


def plan(config: dict[str, Any], nodes: Sequence[RelayNode]) -> dict[str, Any]:
    """The config with vpnfleet's parts brought in line with ``nodes`` (pure; ``config`` is not modified)."""
    if "outbound" in config or "outboundDetour" in config:
        raise RelayError('the config uses the legacy "outbound"/"outboundDetour" keys; convert them to "outbounds"')
    ids = [n.node_id for n in nodes]
    if len(set(ids)) != len(ids):
        raise RelayError("node ids must be unique")
    result = copy.deepcopy(config)
    own = [o for o in _list_at(result, "outbounds", "outbounds") if not _is_managed(o)]
    if "outbounds" in result or nodes:
        result["outbounds"] = own + [n.outbound() for n in sorted(nodes, key=lambda n: n.node_id)]

    routing = result.get("routing", {})
    if not isinstance(routing, dict):
        raise RelayError("routing must be a JSON object")
    rules = _list_at(routing, "rules", "routing.rules")
    balancers = _list_at(routing, "balancers", "routing.balancers")
    ours = [i for i, b in enumerate(balancers) if isinstance(b, dict) and b.get("tag") == BALANCER_TAG]
    others = [b for i, b in enumerate(balancers) if i not in ours]
    if nodes:
        if ours:  # kept in place; the operator may have added e.g. a strategy
            balancers[ours[0]] = {**balancers[ours[0]], **BALANCER}
            routing["balancers"] = [b for i, b in enumerate(balancers) if i not in ours[1:]]
        else:
            routing["balancers"] = balancers + [dict(BALANCER)]
        if not any(isinstance(r, dict) and r.get("balancerTag") == BALANCER_TAG for r in rules):
            routing["rules"] = rules + [dict(CATCH_ALL_RULE)]
        result["routing"] = routing
        return result

    kept_rules = [r for r in rules if r != CATCH_ALL_RULE]
    if len(kept_rules) != len(rules):
        _set_or_drop(routing, "rules", kept_rules)
    if ours and not any(isinstance(r, dict) and r.get("balancerTag") == BALANCER_TAG for r in kept_rules):
        _set_or_drop(routing, "balancers", others)
    if "routing" in result and not routing and config["routing"]:  # vpnfleet emptied it
        del result["routing"]
    return result


def _set_or_drop(parent: dict[str, Any], key: str, items: list[Any]) -> None:
    """Store ``items`` under ``key``, or remove the key once vpnfleet emptied the list."""
    if items:
        parent[key] = items
    else:
        parent.pop(key, None)


def _managed_by_tag(config: dict[str, Any]) -> dict[str, Any]:
    return {o["tag"]: o for o in config.get("outbounds", []) if _is_managed(o)}


def _clip(text: str, secrets: Sequence[str]) -> str:
    """A command's output for an error message: secrets masked, the tail kept if long."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = text.strip()
    return text if len(text) <= OUTPUT_LIMIT else "..." + text[-OUTPUT_LIMIT:]


async def _run(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` (no shell); return its exit code and combined output. Raises OSError, TimeoutError.

    Output goes to a temporary file, not a pipe, so a daemon the command leaves behind (a reload script
    may start V2Ray) cannot hold the call open. On timeout the command's whole process group is killed.
    """
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        output.seek(0)
        return code, output.read().decode(errors="replace")


class LocalRelay:
    """Keeps one local V2Ray config's relay outbounds in step with the running nodes."""

    def __init__(self, config_path: Path, *, v2ray_binary: str = "v2ray", reload_command: str = "",
                 backups_kept: int = 10, test_timeout: float = 20.0) -> None:
        if backups_kept < 1:
            raise ValueError("backups_kept must be at least 1")
        self.config_path = Path(config_path)
        self.v2ray_binary = v2ray_binary
        self.reload_argv = shlex.split(reload_command)
        self.backups_kept = backups_kept
        self.test_timeout = test_timeout
        self._lock = asyncio.Lock()
        self._reload_pending = False  # the file changed but the reload failed: retry on the next sync

    async def sync(self, nodes: Sequence[RelayNode]) -> bool:
        """Bring the config in line with ``nodes``; True if the file was rewritten (and reloaded).

        Raises RelayError when the file cannot be read or parsed, when V2Ray rejects the result (the file
        is then untouched), or when the reload command fails (the new file is then in place, and the next
        sync retries the reload even if nothing else changed; it then returns True).
        """
        async with self._lock:
            path = Path(os.path.realpath(self.config_path))  # write next to the real file, not over a symlink
            original = self._read(path)
            try:
                current = json.loads(original)
            except ValueError as exc:
                raise RelayError(
                    f"{path} is not valid JSON (comments are not supported), left untouched: {exc}") from None
            if not isinstance(current, dict):
                raise RelayError(f"{path} must hold a JSON object, left untouched")
            candidate = plan(current, nodes)
            secrets = [n.uuid for n in nodes]
            if candidate == current:
                if not self._reload_pending:
                    return False
                await self._reload(path, secrets)
                return True
            text = json.dumps(candidate, indent=2, ensure_ascii=False) + "\n"
            temp = self._write_temp(path, text)
            try:
                await self._test(temp, secrets)
                backup = await asyncio.to_thread(self._commit, path, temp, original)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            self._log_change(path, current, candidate, backup)
            if self.reload_argv:
                self._reload_pending = True
                await self._reload(path, secrets)
            return True

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RelayError(f"local V2Ray config {path} does not exist") from None
        except OSError as exc:
            raise RelayError(f"cannot read local V2Ray config {path}: {exc}") from None

    @staticmethod
    def _write_temp(path: Path, text: str) -> Path:
        """The candidate in a temp file beside ``path`` (same file system, so the final rename is atomic)."""
        try:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".vpnfleet-tmp")
        except OSError as exc:
            raise RelayError(f"cannot create a temporary file in {path.parent}: {exc}") from None
        temp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise RelayError(f"cannot write {temp}: {exc}") from None
        return temp

    async def _test(self, candidate: Path, secrets: Sequence[str]) -> None:
        argv = [self.v2ray_binary, "-test", "-config", str(candidate)]
        try:
            code, output = await _run(argv, self.test_timeout)
        except TimeoutError:
            raise RelayError(f"`v2ray -test` took longer than {self.test_timeout:g}s; config left untouched") from None
        except OSError as exc:
            raise RelayError(f"cannot run {self.v2ray_binary!r} to test the config: {exc}") from None
        if code != 0:
            raise RelayError(f"V2Ray rejected the new config (exit {code}); config left untouched:\n"
                             f"{_clip(output, secrets)}")

    def _commit(self, path: Path, temp: Path, original: bytes) -> Path:
        """Back up the current file, then atomically put ``temp`` in its place with the same mode (and owner)."""
        try:
            if path.read_bytes() != original:
                raise RelayError(f"{path} changed while vpnfleet was updating it; nothing written, sync again")
            info = path.stat()
            backup = self._backup(path, original, info)
            os.chmod(temp, stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):  # only root can give the file away
                    os.chown(temp, info.st_uid, info.st_gid)
            os.replace(temp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise RelayError(f"cannot replace {path}: {exc}") from None
        self._prune(path)
        return backup

    def _backup(self, path: Path, content: bytes, info: os.stat_result) -> Path:
        """``<name>.bak-<UTC time>`` holding ``content``, with the file's mode; a name is never reused."""
        moment = datetime.now(timezone.utc)
        while True:
            backup = path.with_name(f"{path.name}.bak-{moment.strftime(_BACKUP_STAMP)}")
            try:
                fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IMODE(info.st_mode))
                break
            except FileExistsError:
                moment += timedelta(microseconds=1)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        return backup

    def backups(self) -> list[Path]:
        """The config's backups, oldest first."""
        path = Path(os.path.realpath(self.config_path))
        pattern = re.compile(re.escape(path.name) + r"\.bak-\d{8}T\d{6}\.\d{6}Z")
        return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))

    def _prune(self, path: Path) -> None:
        for old in self.backups()[: -self.backups_kept]:
            try:
                old.unlink()
            except OSError as exc:
                log.warning("cannot delete old backup %s: %s", old, exc)

    async def _reload(self, path: Path, secrets: Sequence[str]) -> None:
        prefix = f"{path} was written but the reload command failed"
        try:
            code, output = await _run(self.reload_argv, self.test_timeout)
        except TimeoutError:
            raise RelayError(f"{prefix}: no exit after {self.test_timeout:g}s") from None
        except OSError as exc:
            raise RelayError(f"{prefix}: {exc}") from None
        if code != 0:
            raise RelayError(f"{prefix} (exit {code}):\n{_clip(output, secrets)}")
        self._reload_pending = False
        log.info("local V2Ray reloaded with %s", self.reload_argv[0])

    @staticmethod
    def _log_change(path: Path, before: dict[str, Any], after: dict[str, Any], backup: Path) -> None:
        old, new = _managed_by_tag(before), _managed_by_tag(after)
        added, removed = new.keys() - old.keys(), old.keys() - new.keys()
        changed = sum(1 for tag in new.keys() & old.keys() if new[tag] != old[tag])
        log.info("local V2Ray config %s updated: %d node(s) added, %d removed, %d changed, %d relayed; backup %s",
                 path, len(added), len(removed), changed, len(new), backup.name)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
