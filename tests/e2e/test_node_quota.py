"""Node quota and creation rate per region (issue 10, item 8), on both creation APIs: /api/v1/nodes and seed
000's /api/v2ray/instances. A real controller with the local provider; the service's arithmetic directly too."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import update

from controller.errors import Conflict, TooManyRequests
from controller.models import Node, utcnow
from controller.settings import Settings, load_settings
from tests.controller_process import ControllerProcess, wait_for
from tests.unit.test_node_profiles import Fleet, _settings, new


def _configured(tmp_path: Path, max_per_region: int, per_minute: int) -> tuple[dict[str, str], Path | None]:
    """How to give a controller these limits: the environment, else a config file, else skip (the settings
    model may not read them yet)."""
    env = {"VPNFLEET_MAX_NODES_PER_REGION": str(max_per_region),
           "VPNFLEET_NODE_CREATIONS_PER_MINUTE": str(per_minute)}
    s = load_settings(path=None, env=env)
    if (s.max_nodes_per_region, s.node_creations_per_minute) == (max_per_region, per_minute):
        return env, None
    config = tmp_path / "vpnfleet.yaml"
    config.write_text(f"nodes: {{max_per_region: {max_per_region}, creations_per_minute: {per_minute}}}\n")
    s = load_settings(path=config, env={})
    if (s.max_nodes_per_region, s.node_creations_per_minute) == (max_per_region, per_minute):
        return {}, config
    pytest.skip("the settings read neither VPNFLEET_MAX_NODES_PER_REGION/VPNFLEET_NODE_CREATIONS_PER_MINUTE "
                "nor nodes.max_per_region/creations_per_minute yet")


@pytest.fixture
def limited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControllerProcess]:
    max_per_region, per_minute = request.param
    env, config = _configured(tmp_path, max_per_region, per_minute)
    ctl = ControllerProcess(tmp_path / "data", env=env, config=config)
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()


@pytest.mark.parametrize("limited", [(1, 100)], indirect=True)
def test_a_region_holds_at_most_its_quota_of_live_nodes(limited: ControllerProcess) -> None:
    ctl, api = limited, limited.api
    nid = ctl.create_node()["id"]
    r = api.post("/api/v1/nodes", json={"region": "local"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "CONFLICT" and "nodes.max_per_region" in err["message"] and "region" in err["details"]
    # a stopped node still counts (it is live); seed 000 then has no active instance to hand back, so it
    # would create one: the quota refuses it in seed 000's shape
    ctl.wait_running(nid)
    assert api.post(f"/api/v1/nodes/{nid}/stop").status_code == 202
    wait_for(lambda: ctl.node(nid)["status"] == "stopped", 30, message="stopped")
    r = api.post("/api/v2ray/instances", json={"region": "local"})
    assert r.status_code == 409 and isinstance(r.json()["error"], str) and "max_per_region" in r.json()["error"]
    # a deleted node frees its place
    assert api.delete(f"/api/v1/nodes/{nid}").status_code == 202
    wait_for(lambda: ctl.node(nid)["status"] == "deleted", 30, message="deleted")
    r = api.post("/api/v2ray/instances", json={"region": "local"})
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text


@pytest.mark.parametrize("limited", [(100, 3)], indirect=True)
def test_node_creations_per_minute_are_limited_with_retry_after(limited: ControllerProcess) -> None:
    api = limited.api
    first = api.post("/api/v2ray/instances", json={"region": "local"})
    assert first.status_code == 200, first.text
    made = [first.json()["uuid"]] + [limited.create_node()["id"] for _ in range(2)]  # 3 in this minute
    r = api.post("/api/v1/nodes", json={"region": "local"})
    assert r.status_code == 429, r.text
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 60
    err = r.json()["error"]
    assert err["code"] == "TOO_MANY_REQUESTS" and "nodes.creations_per_minute" in err["message"]
    assert err["request_id"] == r.headers["x-request-id"]
    # seed 000 with an active instance creates nothing: it answers with that instance, rate or not
    again = api.post("/api/v2ray/instances", json={"region": "local"})
    assert again.status_code == 200 and again.json()["uuid"] in made
    # deleting does not give creations back; with no active instance seed 000 is throttled in its own shape
    for nid in made:
        assert api.delete(f"/api/v1/nodes/{nid}").status_code == 202
    r = api.post("/api/v2ray/instances", json={"region": "local"})
    assert r.status_code == 429 and isinstance(r.json()["error"], str), r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert len(api.get("/api/v1/nodes", params={"include_deleted": True}).json()["items"]) == 3
    # refused creations are audited as failures, and made no node
    ops = api.get("/api/v1/operations", params={"result": "fail", "size": 100}).json()["items"]
    assert sum(op["status_code"] == 429 for op in ops) == 2


# -- the service's arithmetic, without processes --------------------------------------------------------------

@pytest.fixture
async def fleet(tmp_path: Path):  # noqa: ANN201
    from controller.db import prepare_database

    f = Fleet(tmp_path, _settings(max_nodes_per_region=2, node_creations_per_minute=3))
    await prepare_database(f.engine)
    yield f
    await f.engine.dispose()


async def _deleted(fleet: Fleet, node_id: str) -> None:
    """What the delete driver leaves behind (the fake provider has no machines to terminate)."""
    async with fleet.sessions() as s:
        await s.execute(update(Node).where(Node.uuid == node_id).values(status="deleted", is_deleted=True,
                                                                        deleted_at=utcnow()))
        await s.commit()


async def test_quota_counts_live_nodes_and_rate_counts_every_creation(fleet: Fleet) -> None:
    a, _ = await fleet.nodes.create(new("local"))
    await fleet.nodes.create(new("local"))
    await fleet.nodes.create(new("ap-east-1"))  # another region has its own quota and rate
    with pytest.raises(Conflict, match="nodes.max_per_region"):
        await fleet.nodes.create(new("local"))
    # the same node again from seed 000 is no creation
    reused, created = await fleet.nodes.create(new("local"), reuse_active=True)
    assert not created
    await _deleted(fleet, a.uuid)  # one place free, but this minute's creations still count
    await fleet.nodes.create(new("local"))  # the 3rd creation of the minute
    await _deleted(fleet, reused.uuid)
    with pytest.raises(TooManyRequests, match="nodes.creations_per_minute") as caught:
        await fleet.nodes.create(new("local"))
    assert 1 <= caught.value.retry_after <= 60


def test_limits_have_sane_defaults() -> None:
    s = Settings()
    assert s.max_nodes_per_region >= 1 and s.node_creations_per_minute >= 1
