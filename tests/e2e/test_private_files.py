"""Private files (issue 10, item 2): modes after a first start, a start refused while a key is readable by others,
an old install's database tightened, and the admin key printed only on the first start and only to a terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.controller_process import REPO, ControllerProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_modes_after_a_first_start_and_a_local_node(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    try:
        ctl.start()
        data = ctl.data_dir
        assert mode(data) == 0o700
        for path in ("vpnfleet.db", "vpnfleet.db-wal", "admin.key", "pki/ca.key", "pki/server.key",
                     "tls/server.key"):
            if (data / path).exists() or path != "vpnfleet.db-wal":
                assert mode(data / path) == 0o600, path
        for directory in ("pki", "tls", "agent-package"):
            assert mode(data / directory) == 0o700, directory
        node = ctl.create_node(name="private")
        ctl.wait_running(node["id"])
        node_dir = data / "local-nodes" / node["id"]
        # search only for others where a root agent's data-plane user must pass (nothing listable or readable)
        for directory in (data, data / "local-nodes", node_dir):
            assert mode(directory) & 0o066 == 0, (directory, oct(mode(directory)))
        # 0700, plus search for others when root: V2Ray runs as the data-plane user below it (state/v2ray)
        assert mode(node_dir) == (0o701 if os.geteuid() == 0 else 0o700)
        for name in ("agent.yaml", "agent.out", "agent.pid"):
            assert mode(node_dir / name) == 0o600, name
        # nothing else under the data dir is readable or writable by others: the exceptions are public (the
        # Xray binary nodes download, the agent's node id and CA copy inside its 0700 node dir) or this test's
        # own log, and V2Ray's directory, shared with the data-plane user's group by the agent on purpose
        public = {"controller.log", "node_id", "ca.pem"}
        exposed = [p for p in data.rglob("*") if not p.is_symlink() and mode(p) & 0o006
                   and "v2ray" not in p.parts and p.name not in public and not p.name.startswith("xray-")]
        assert not exposed, exposed
    finally:
        ctl.cleanup()


@pytest.mark.parametrize("key", ["pki/ca.key", "admin.key", "tls/server.key"])
def test_a_key_readable_by_others_refuses_the_start(tmp_path: Path, key: str) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    try:
        ctl.start()
        ctl.stop()
        os.chmod(ctl.data_dir / key, 0o644)
        result = subprocess.run([sys.executable, "-m", "controller.main"], env=ctl.env, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"key file {ctl.data_dir / key} is accessible to other users (mode 0644)" in result.stderr
        assert "chmod 600" in result.stderr
        os.chmod(ctl.data_dir / key, 0o600)
        ctl.start()  # fixed: it starts again
    finally:
        ctl.cleanup()


def test_an_old_install_s_database_is_made_private(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    try:
        ctl.start()
        ctl.stop()
        os.chmod(ctl.data_dir, 0o755)
        os.chmod(ctl.data_dir / "vpnfleet.db", 0o644)
        ctl.start()
        assert mode(ctl.data_dir) == 0o700 and mode(ctl.data_dir / "vpnfleet.db") == 0o600
    finally:
        ctl.cleanup()


def run_on_a_terminal(ctl: ControllerProcess, timeout: float = 60.0) -> str:
    """Start the controller with its stdout on a pseudo-terminal; return what it printed up to the admin key line."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "controller.main"], env=ctl.env, cwd=REPO, stdout=slave,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        while b"Admin key:" not in out or not out.endswith(b"\n"):
            assert time.monotonic() < deadline and proc.poll() is None, out.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        time.sleep(0.3)  # the rest of the line
        while select.select([master], [], [], 0.2)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        os.close(master)
    return out.decode(errors="replace")


def test_the_admin_key_is_shown_on_the_first_start_only_and_only_to_a_terminal(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    first = run_on_a_terminal(ctl)
    key = (ctl.data_dir / "admin.key").read_text().strip()
    assert key in first and "shown once" in first
    second = run_on_a_terminal(ctl)
    assert key not in second and f"Admin key: in {ctl.data_dir / 'admin.key'}" in second
    # the file was created exclusively and privately
    assert mode(ctl.data_dir / "admin.key") == 0o600


def test_a_planted_symlink_is_not_followed_when_the_admin_key_is_written(tmp_path: Path) -> None:
    ctl = ControllerProcess(tmp_path / "data")
    ctl.data_dir.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    target.chmod(0o600)
    (ctl.data_dir / "admin.key").symlink_to(target)
    try:
        ctl.start()
        assert target.read_text() == "untouched\n"
        assert not (ctl.data_dir / "admin.key").is_symlink() and mode(ctl.data_dir / "admin.key") == 0o600
    finally:
        ctl.cleanup()
