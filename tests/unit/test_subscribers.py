"""Subscriber rules without processes: statuses, node selection, and the V2Ray part of desired states."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.models import Node, Subscriber, utcnow
from controller.services.desired_state import allowed_on, node_v2ray_inbounds, v2ray_desired
from controller.services.subscribers import scheduled_status
from protos import agent_pb2

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def _sub(**kw) -> Subscriber:
    values = dict(username="u", credential_uuid=str(uuid.uuid4()), short_uuid="s" * 22, status="active",
                  expires_at=NOW + dt.timedelta(days=1), data_limit_bytes=None, used_upload_bytes=0,
                  used_download_bytes=0)
    values.update(kw)
    return Subscriber(**values)


def test_scheduled_status() -> None:
    assert scheduled_status(_sub(), NOW) == "active"
    assert scheduled_status(_sub(expires_at=NOW), NOW) == "expired"
    assert scheduled_status(_sub(data_limit_bytes=100, used_upload_bytes=40, used_download_bytes=59), NOW) == "active"
    assert scheduled_status(_sub(data_limit_bytes=100, used_upload_bytes=40, used_download_bytes=60), NOW) == "limited"
    # expiry wins over the limit: extending alone must not leave a limited client looking expired
    assert scheduled_status(_sub(expires_at=NOW - dt.timedelta(1), data_limit_bytes=1, used_download_bytes=5),
                            NOW) == "expired"


def test_allowed_on() -> None:
    assert allowed_on(None, None, "n1", "local")
    assert allowed_on([], [], "n1", "local")
    assert allowed_on(["n1"], None, "n1", "local") and not allowed_on(["n2"], None, "n1", "local")
    assert allowed_on(None, ["local"], "n1", "local") and not allowed_on(None, ["us-west-2"], "n1", "local")
    assert allowed_on(["n2"], ["local"], "n1", "local")  # either matches


def test_node_inbounds_default_to_the_settings_ports() -> None:
    old = Node(uuid="n", region="local", v2ray_inbounds=None)
    assert [(i["protocol"], i["port"], i["listen"]) for i in node_v2ray_inbounds(old, 11994, 11995)] == \
        [("vmess", 11994, ""), ("vless", 11995, "")]
    new = Node(uuid="n", region="local",
               v2ray_inbounds=[{"tag": "vmess", "protocol": "vmess", "port": 2000, "listen": "127.0.0.1"}])
    assert node_v2ray_inbounds(new, 11994, 11995)[0]["port"] == 2000


async def test_v2ray_desired_carries_only_live_subscribers_allowed_on_each_node(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    later = now + dt.timedelta(days=1)
    async with sessions() as s:
        a = Node(name="a", region="r1", provider="local", status="running")
        b = Node(name="b", region="r2", provider="local", status="running",
                 v2ray_inbounds=[{"tag": "vless", "protocol": "vless", "port": 3000, "listen": ""}])
        s.add_all([a, b])
        await s.flush()
        subs = {
            "everywhere": _sub(username="everywhere", short_uuid="a" * 22, expires_at=later),
            "only-a": _sub(username="only-a", short_uuid="b" * 22, expires_at=later, node_ids=[a.uuid]),
            "region-r2": _sub(username="region-r2", short_uuid="c" * 22, expires_at=later, regions=["r2"]),
            "blocked": _sub(username="blocked", short_uuid="d" * 22, expires_at=later, status="blocked"),
            "limited": _sub(username="limited", short_uuid="e" * 22, expires_at=later, status="limited"),
            # active in the table but already past its end: never rendered, even before the schedule runs
            "ended": _sub(username="ended", short_uuid="f" * 22, expires_at=now - dt.timedelta(seconds=1)),
        }
        s.add_all(subs.values())
        await s.commit()
        relay = agent_pb2.V2RayUser(email="vpnfleet-relay", uuid=str(uuid.uuid4()))
        out = await v2ray_desired(s, [a, b], 11994, 11995, [relay])
    await engine.dispose()

    def emails(node: Node) -> set[str]:
        return {u.email for u in out[node.uuid].users}

    ids = {k: v.id for k, v in subs.items()}
    assert emails(a) == {ids["everywhere"], ids["only-a"], "vpnfleet-relay"}
    assert emails(b) == {ids["everywhere"], ids["region-r2"], "vpnfleet-relay"}
    user = next(u for u in out[a.uuid].users if u.email == ids["everywhere"])
    assert user.uuid == subs["everywhere"].credential_uuid
    assert [(i.protocol, i.port) for i in out[a.uuid].inbounds] == [("vmess", 11994), ("vless", 11995)]
    assert [(i.protocol, i.port) for i in out[b.uuid].inbounds] == [("vless", 3000)]
