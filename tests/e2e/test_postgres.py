"""The controller on a real PostgreSQL server: migrations, nodes, exactly-once telemetry, restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess, wait_for
from tests.postgres_server import PostgresServer, pg_bindir

pytestmark = pytest.mark.skipif(
    pg_bindir() is None or (os.geteuid() == 0 and shutil.which("runuser") is None),
    reason="PostgreSQL server binaries not installed (make test installs Debian's postgresql as root)",
)


@pytest.fixture
def pg_controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    pg = PostgresServer().start()
    ctl = ControllerProcess(tmp_path / "data", env={"VPNFLEET_DATABASE_URL": pg.url})
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()
        pg.stop()


def test_nodes_and_telemetry_on_postgres(pg_controller: ControllerProcess) -> None:
    ctl = pg_controller
    assert ctl.api.get("/api/v1/health").json()["database"] == "postgresql+asyncpg"
    r = ctl.api.post("/api/v2ray/instances", json={"region": "local"})
    uuid = r.json()["uuid"]
    assert ctl.api.post("/api/v2ray/instances", json={"region": "local"}).json()["uuid"] == uuid
    ctl.wait_running(uuid)
    history = wait_for(lambda: (h := ctl.api.get(f"/api/v1/nodes/{uuid}/metrics").json()["history"])
                       and h[-1]["samples"] >= 2 and h, 20, message="metrics rolled up on PostgreSQL")
    assert history[-1]["cpu_max"] >= history[-1]["cpu_avg"] >= 0

    r = ctl.api.patch(f"/api/v1/nodes/{uuid}", json={"agent_settings": {"log_level": "debug"}})
    assert r.status_code == 200
    wait_for(lambda: ctl.node(uuid)["agent"]["applied_revision"] == 2, 15, message="applied on PostgreSQL")

    ctl.restart()
    node = ctl.wait_running(uuid)
    assert node["agent"]["desired_revision"] == 2 and ctl.api.get("/api/v1/nodes").json()["total"] == 1
    ops = ctl.api.get("/api/v1/operations", params={"target_id": uuid}).json()
    assert ops["total"] >= 2
