"""Run a real controller process for tests: free loopback ports, its own data dir, full cleanup.

The controller speaks https like the product does (its self-issued certificate; clients verify it with the
controller's CA, DATA_DIR/pki/ca.crt); ``tls=False`` for the few tests that need plain http.

Local nodes' agents run in their own sessions (like real nodes they outlive the controller), so cleanup
also kills every agent whose pid file lies under the data dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx

from controller.providers.local import kill_processes_of
from tests.v2ray_lab import XRAY
from tests.world import REALITY_DEST, REALITY_SERVER_NAME

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):  # noqa: ANN001
    """Poll ``predicate`` until it returns a truthy value; fail the test with ``message`` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def kill_agents(data_dir: Path) -> None:
    """Kill every local node's agent and what it runs (V2Ray outlives its agent on purpose)."""
    for pid_file in data_dir.glob("local-nodes/*/agent.pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError, OSError):
            pass
    for node_dir in data_dir.glob("local-nodes/*"):
        kill_processes_of(node_dir)


class ControllerProcess:
    """A ``vpnfleet-controller`` subprocess plus an authenticated httpx client."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, config: Path | None = None,
        relative_data_dir: bool = False, tls: bool = True,
    ) -> None:
        """relative_data_dir: run in data_dir's parent with VPNFLEET_DATA_DIR=<its name>, as `make run` does.
        tls: https with the controller's own certificate (the default), else plain http."""
        self.data_dir = data_dir
        self.cwd = data_dir.parent if relative_data_dir else REPO
        self.http_port, self.grpc_port, self.enroll_port = free_port(), free_port(), free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.http_port}"
        self.env = {
            **os.environ,
            "VPNFLEET_DATA_DIR": data_dir.name if relative_data_dir else str(data_dir),
            "PYTHONPATH": str(REPO),
            "VPNFLEET_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "VPNFLEET_GRPC_ADDR": f"127.0.0.1:{self.grpc_port}",
            "VPNFLEET_ENROLL_ADDR": f"127.0.0.1:{self.enroll_port}",
            "VPNFLEET_HEARTBEAT_INTERVAL": "2",
            "VPNFLEET_OFFLINE_GRACE": "2",
            "VPNFLEET_METRICS_INTERVAL": "1",
            # nodes run V2Ray only in the tests about it (they pass VPNFLEET_V2RAY_ENABLED=1)
            "VPNFLEET_V2RAY_ENABLED": "0",
            # many tests share one controller and create nodes quickly; tests/e2e/test_node_quota.py sets its own
            "VPNFLEET_NODE_CREATIONS_PER_MINUTE": "10000",
            "VPNFLEET_TLS_ENABLED": "1" if tls else "0",
            # tests drive the API far harder than 1,000 requests a minute; tests/e2e/test_rate_limits.py sets its own
            "VPNFLEET_RATE_LIMIT_AUTHENTICATED": "10000000",
            "VPNFLEET_RATE_LIMIT_ANONYMOUS": "10000000",
            "VPNFLEET_RATE_LIMIT_SUBSCRIPTION": "10000000",
            # Argon2id at its floor (8 MiB, one pass): many tests sign in; test_sessions measures the defaults
            "VPNFLEET_ARGON2_TIME_COST": "1",
            "VPNFLEET_ARGON2_MEMORY_KIB": "8192",
            # the Xray the controller serves its nodes and local agents run (make test builds it in the venv)
            **({"VPNFLEET_XRAY": XRAY} if shutil.which(XRAY) else {}),
            **(env or {}),
        }
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "controller.log"
        self.client: httpx.Client | None = None

    # -- process --------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "ControllerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "controller.main"] + (["--config", str(self.config)] if self.config else [])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        log.close()
        wait_for(self._healthy, timeout, message=f"controller health (log: {self.log_path})")
        key = self.admin_key()
        self.client = self.http_client(headers={"X-API-Key": key}, timeout=30.0)
        return self

    def admin_key(self) -> str:
        """The admin account's API key, made at first start (DATA_DIR/admin.key)."""
        return (self.data_dir / "admin.key").read_text().strip()

    def admin_password(self) -> str:
        """The admin account's first password (DATA_DIR/admin.password)."""
        return (self.data_dir / "admin.password").read_text().strip()

    @property
    def ca_file(self) -> Path:
        """The CA the controller's https certificate chains to (what its clients trust)."""
        return self.data_dir / "pki" / "ca.crt"

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for this controller: its CA only (never the system's), or True for plain http."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else True

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for this controller (base URL and trust set; kwargs as for httpx.Client)."""
        return httpx.Client(base_url=self.url, verify=self.verify(), **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """One unauthenticated request (a fresh connection), e.g. the public health check."""
        with self.http_client(timeout=kwargs.pop("timeout", 10.0)) as client:
            return client.get(path, **kwargs)

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        if self.tls and not self.ca_file.exists():
            return False
        try:
            return self.get("/api/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def restart(self) -> "ControllerProcess":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        kill_agents(self.data_dir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- API helpers -------------------------------------------------------------------------------------------
    @property
    def api(self) -> httpx.Client:
        assert self.client is not None, "controller not started"
        return self.client

    def node(self, node_id: str) -> dict[str, Any]:
        r = self.api.get(f"/api/v1/nodes/{node_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def create_node(self, region: str = "local", **body: Any) -> dict[str, Any]:
        r = self.api.post("/api/v1/nodes", json={"region": region, **body})
        assert r.status_code == 202, r.text
        return r.json()

    def wait_running(self, node_id: str, timeout: float = 30.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            n = self.node(node_id)
            if n["status"] == "error":
                raise AssertionError(f"node went to error: {n['status_reason']}")
            ok = n["status"] == "running" and n["agent"]["online"] and n["agent"]["in_sync"]
            return n if ok else None

        return wait_for(ready, timeout, message=f"node {node_id} running, online and in sync")

    def agent_pid(self, node_id: str) -> int:
        return int((self.data_dir / "local-nodes" / node_id / "agent.pid").read_text())


#: what tests about V2Ray subscribers run with: V2Ray on the nodes (Xray where the tests have it), the
#: expiry/limit schedule every second, and REALITY borrowing the TLS site of the test network's internet host
V2RAY_ENV = {"VPNFLEET_V2RAY_ENABLED": "1", "VPNFLEET_CLIENT_CHECK_INTERVAL": "1",
             "VPNFLEET_V2RAY_REALITY_DEST": REALITY_DEST, "VPNFLEET_V2RAY_REALITY_SERVER_NAMES": REALITY_SERVER_NAME}


@contextlib.contextmanager
def running_controller(data_dir: Path, env: dict[str, str] | None = None,
                       tls: bool = True) -> Iterator[ControllerProcess]:
    """A started controller; on exit it and everything its local nodes run are killed."""
    ctl = ControllerProcess(data_dir, env=env, tls=tls)
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()

