"""Subscriber rules without processes: statuses, node selection, and the V2Ray part of desired states."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import AsyncIterator, get_args

import pytest
from pydantic import ValidationError as PydanticError
from sqlalchemy import update

from controller.credentials import new_secret, node_credential
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import AlreadyExists, ValidationFailed
from controller.models import Node, Subscriber, utcnow
from controller.services.desired_state import NodeUser, allowed_on, node_v2ray_inbounds, v2ray_desired
from controller.schemas.clients import MAX_DAYS, SubscriberBody, SubscriberUpdate, SubscriptionFormat
from controller.services.subscribers import GIB, MIB, SubscriberService, scheduled_status
from controller.share_links import SUBSCRIPTION_FORMATS, pick_format
from controller.settings import Settings
from protos import agent_pb2

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def _sub(**kw) -> Subscriber:
    values = dict(username="u", credential_uuid=str(uuid.uuid4()), credential_secret=new_secret(),
                  shared_credential=False, short_uuid="s" * 22, status="active",
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
    """A node from before cores (inbounds None: the settings' ports) serves VMess only on V2Ray, or VMess and
    VLESS-REALITY-Vision once its agent reports Xray; never the old plain VLESS."""
    old = Node(uuid="n", region="local", v2ray_inbounds=None, capabilities=["v2ray"])
    assert [(i["profile"], i["port"], i["listen"]) for i in node_v2ray_inbounds(old, 11994, 11995)] == \
        [("vmess", 11994, "")]
    old.capabilities = ["v2ray", "xray"]
    assert [(i["protocol"], i["profile"], i["port"]) for i in node_v2ray_inbounds(old, 11994, 11995)] == \
        [("vmess", "vmess", 11994), ("vless", "vless-reality-vision", 11995)]
    new = Node(uuid="n", region="local", core="xray",
               v2ray_inbounds=[{"tag": "vmess", "protocol": "vmess", "port": 2000, "listen": "127.0.0.1",
                                "profile": "vmess"}])
    assert node_v2ray_inbounds(new, 11994, 11995)[0]["port"] == 2000


async def test_v2ray_desired_carries_only_live_subscribers_allowed_on_each_node(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    later = now + dt.timedelta(days=1)
    async with sessions() as s:
        a = Node(name="a", region="r1", provider="local", status="running")
        # from before cores, its agent has Xray: the old VLESS port serves REALITY
        b = Node(name="b", region="r2", provider="local", status="running", capabilities=["v2ray", "xray"],
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
        relay = NodeUser(email="vpnfleet-relay", secret=new_secret())
        settings = Settings(egress_blocked_cidrs=("198.51.100.0/24",), egress_block_bittorrent=True)
        out = await v2ray_desired(s, [a, b], settings, [relay])
    await engine.dispose()

    def emails(node: Node) -> set[str]:
        return {u.email for u in out[node.uuid].users}

    ids = {k: v.id for k, v in subs.items()}
    assert emails(a) == {ids["everywhere"], ids["only-a"], "vpnfleet-relay"}
    assert emails(b) == {ids["everywhere"], ids["region-r2"], "vpnfleet-relay"}
    assert [(i.profile, i.port) for i in out[a.uuid].inbounds] == [("vmess", 11994)]
    assert out[a.uuid].core == "v2ray"
    assert [(i.protocol, i.profile, i.port) for i in out[b.uuid].inbounds] == \
        [("vmess", "vmess", 11994), ("vless", "vless-reality-vision", 3000)]
    assert out[b.uuid].core == "xray"
    rs = out[b.uuid].inbounds[1].reality
    assert (rs.private_key, list(rs.short_ids), rs.dest, list(rs.server_names)) == \
        (b.reality_private_key, b.reality_short_ids, "www.microsoft.com:443", ["www.microsoft.com"])
    # Each node gets only its own ids: the same subscriber (and the relay) has another id on the other node.
    on = {node.uuid: {u.email: u.uuid for u in out[node.uuid].users} for node in (a, b)}
    everywhere = subs["everywhere"]
    assert on[a.uuid][everywhere.id] == node_credential(everywhere.credential_secret, a.uuid)
    assert on[b.uuid][everywhere.id] == node_credential(everywhere.credential_secret, b.uuid)
    assert on[a.uuid][everywhere.id] != on[b.uuid][everywhere.id]
    assert on[a.uuid]["vpnfleet-relay"] != on[b.uuid]["vpnfleet-relay"]
    assert everywhere.credential_uuid not in on[a.uuid].values()  # no shared id for a new subscriber
    # The egress policy travels with the part: the operator's additions and switches.
    assert list(out[a.uuid].egress.blocked_cidrs) == ["198.51.100.0/24"]
    assert out[a.uuid].egress.block_bittorrent and not out[a.uuid].access_log


async def test_legacy_shared_id_is_carried_until_the_cut_over(tmp_path: Path) -> None:
    """A subscriber from before per-node ids keeps the old shared id on every node (its apps keep working)
    next to the node's own id, until rotation or the fleet cut-over."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        node = Node(name="a", region="r1", provider="local", status="running")
        legacy = _sub(username="legacy", short_uuid="g" * 22, expires_at=utcnow() + dt.timedelta(days=1),
                      shared_credential=True)
        s.add_all([node, legacy])
        await s.commit()
        users = {u.email: u.uuid for u in (await v2ray_desired(s, [node], Settings()))[node.uuid].users}
    assert users == {legacy.id: node_credential(legacy.credential_secret, node.uuid),
                     legacy.id + "+shared": legacy.credential_uuid}
    svc = SubscriberService(Settings(), sessions, FakeHub())
    assert await svc.cut_over_shared_credentials() == 1
    assert await svc.cut_over_shared_credentials() == 0
    async with sessions() as s:
        users = {u.email for u in (await v2ray_desired(s, [node], Settings()))[node.uuid].users}
    assert users == {legacy.id}
    await engine.dispose()


class FakeHub:
    """Records the nodes each change pushes."""

    def __init__(self) -> None:
        self.pushed: list[list[str]] = []

    def mark_dirty(self, nodes: list[str]) -> None:
        self.pushed.append(sorted(nodes))


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[SubscriberService]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    await prepare_database(engine)
    yield SubscriberService(Settings(data_dir=tmp_path), make_sessionmaker(engine), FakeHub())  # type: ignore[arg-type]
    await engine.dispose()


async def test_extend_past_year_9999_is_a_validation_error_on_days(service: SubscriberService) -> None:
    sub = await service.create(SubscriberBody(username="far", days=1))
    far = dt.datetime(9999, 12, 1, tzinfo=dt.timezone.utc)
    async with service._sessions() as s:  # beyond what the API sets (MAX_DAYS ahead): the stored edge case
        await s.execute(update(Subscriber).where(Subscriber.id == sub.id).values(expires_at=far))
        await s.commit()
    with pytest.raises(ValidationFailed) as e:
        await service.extend(sub.id, 31)
    assert "days" in e.value.details
    assert (await service.get(sub.id)).expires_at == far
    assert (await service.extend(sub.id, 30)).expires_at == far + dt.timedelta(days=30)  # the last day still fits


async def test_an_expires_at_outside_years_1_to_9999_in_utc_is_a_validation_error(service: SubscriberService) -> None:
    late = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # year 10000 in UTC
    # the body model clamps it to the latest expiry the API sets (every RFC 3339 time is accepted)...
    assert SubscriberBody(username="late", expires_at=late).expires_at <= utcnow() + dt.timedelta(days=MAX_DAYS)
    with pytest.raises(ValidationFailed) as e:  # ... and the service refuses one that bypassed the model
        await service.create(SubscriberBody.model_construct(username="late", expires_at=late, note=""))
    assert "expires_at" in e.value.details


async def test_a_data_limit_below_one_mib_is_refused(service: SubscriberService) -> None:
    for gb in (1e-10, MIB / GIB * 0.999):
        for model in (SubscriberBody, SubscriberUpdate):  # refused by the models (as the document says)...
            with pytest.raises(PydanticError) as refused:
                model.model_validate({"username": "tiny", "days": 30, "data_limit_gb": gb})
            assert refused.value.errors()[0]["loc"] == ("data_limit_gb",)
        with pytest.raises(ValidationFailed) as e:  # ... and by the service, given one anyway
            await service.create(SubscriberBody.model_construct(username="tiny", days=30, data_limit_gb=gb, note=""))
        assert "data_limit_gb" in e.value.details
    sub = await service.create(SubscriberBody(username="tiny", days=30, data_limit_gb=MIB / GIB))
    assert sub.data_limit_bytes == MIB and sub.status == "active"
    with pytest.raises(ValidationFailed) as e:
        await service.update(sub.id, SubscriberUpdate.model_construct(data_limit_gb=1e-10))
    assert "data_limit_gb" in e.value.details
    assert (await service.update(sub.id, SubscriberUpdate(data_limit_gb=0))).data_limit_bytes is None  # 0: none


async def test_patch_validates_only_the_fields_it_sends(service: SubscriberService) -> None:
    async with service._sessions() as s:
        gone = Node(name="gone", region="local", provider="local", status="running")
        s.add(gone)
        await s.commit()
    sub = await service.create(SubscriberBody(username="bob", days=30, node_ids=[gone.uuid]))
    async with service._sessions() as s:
        await s.execute(update(Node).values(is_deleted=True, status="deleted"))
        await s.commit()
    # the stored id of the deleted node is kept (node selection ignores it); only the regions sent are checked
    sub = await service.update(sub.id, SubscriberUpdate(regions=["local"]))
    assert sub.regions == ["local"] and sub.node_ids == [gone.uuid]
    assert (await service.update(sub.id, SubscriberUpdate(note="still fine"))).note == "still fine"
    with pytest.raises(ValidationFailed) as e:
        await service.update(sub.id, SubscriberUpdate(node_ids=[gone.uuid]))  # sent: checked
    assert "node_ids" in e.value.details
    with pytest.raises(ValidationFailed) as e:
        await service.update(sub.id, SubscriberUpdate(regions=["nowhere"]))
    assert "regions" in e.value.details


async def test_usernames_are_unique_regardless_of_case(service: SubscriberService) -> None:
    alice = await service.create(SubscriberBody(username="alice", days=30))
    for taken in ("Alice", "ALICE", "aLiCe"):
        with pytest.raises(AlreadyExists) as e:
            await service.create(SubscriberBody(username=taken, days=30))
        assert e.value.details == {"username": "already taken"} and taken in e.value.message
    bob = await service.create(SubscriberBody(username="bob", days=30))
    with pytest.raises(AlreadyExists):
        await service.update(bob.id, SubscriberUpdate(username="ALICE"))  # another client's name, in any case
    assert (await service.get(bob.id)).username == "bob"
    # one's own name in another case is not taken; the other fields of the PATCH apply too
    renamed = await service.update(alice.id, SubscriberUpdate(username="Alice", note="capital"))
    assert (renamed.username, renamed.note) == ("Alice", "capital")
    assert (await service.update(alice.id, SubscriberUpdate(username="Alice"))).username == "Alice"
    # look-ups by name ignore case too: the list's search
    rows, total = await service.list(status=None, expired=None, search="ALI", page=1, size=10)
    assert total == 1 and rows[0].id == alice.id


async def test_the_database_refuses_a_name_in_another_case_when_the_check_is_raced(
        service: SubscriberService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's check and a concurrent create can both see the name free: the unique index on
    lower(username) (migration 0008) refuses the second write, which becomes the same 409."""
    carol = await service.create(SubscriberBody(username="carol", days=30))
    dave = await service.create(SubscriberBody(username="dave", days=30))

    async def never_taken(*args: object, **kwargs: object) -> bool:
        return False

    monkeypatch.setattr(SubscriberService, "_username_taken", staticmethod(never_taken))
    with pytest.raises(AlreadyExists):
        await service.create(SubscriberBody(username="CAROL", days=30))
    with pytest.raises(AlreadyExists):
        await service.update(dave.id, SubscriberUpdate(username="Carol"))
    assert (await service.get(dave.id)).username == "dave" and (await service.get(carol.id)).username == "carol"


def test_a_patch_changes_only_what_it_names_and_refuses_null_for_required_fields() -> None:
    assert SubscriberUpdate(note="x").model_fields_set == {"note"}
    # null where null means something: no data limit, every node/region, an empty note
    assert SubscriberUpdate(data_limit_gb=None, node_ids=None, regions=None, note=None).model_fields_set == \
        {"data_limit_gb", "node_ids", "regions", "note"}
    for name in ("username", "days", "expires_at"):
        with pytest.raises(PydanticError) as e:
            SubscriberUpdate(**{name: None})
        assert e.value.errors()[0]["loc"] == (name,) and "cannot be null" in e.value.errors()[0]["msg"]
    # any spelling of a node id is the same node (stored in lower case)
    node = "3F1C2B4A-9D8E-4F70-A1B2-C3D4E5F60718"
    assert SubscriberBody(username="abc", days=1, node_ids=[node]).node_ids == [node.lower()]
    # what the document publishes is what is enforced: no null default for the fields that refuse null
    schema = SubscriberUpdate.model_json_schema()["properties"]
    assert all("default" not in schema[n] and "anyOf" not in schema[n] for n in ("username", "days", "expires_at"))
    assert schema["days"]["minimum"] == 1 and schema["username"]["pattern"]


def test_every_published_subscription_format_is_one_the_renderer_knows() -> None:
    """?format= is an enum in the document: each value must pick a format (else a published value is a 500
    or a 422), and every format must be reachable by its own name."""
    published = set(get_args(SubscriptionFormat))
    assert set(SUBSCRIPTION_FORMATS) <= published
    for name in published:
        assert pick_format(None, name) in SUBSCRIPTION_FORMATS


def test_what_the_document_allows_is_accepted() -> None:
    """Schema-valid input is never refused (schemathesis checks it): times are clamped, not refused; 30.0
    is an integer; a data limit is 0 or at least 1 MiB, as published."""
    now = utcnow()
    ended = SubscriberBody(username="abc", expires_at=dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc))
    assert ended.expires_at.year == 2001  # in the past: created expired (the service's scheduled_status)
    for early in ("1960-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"):
        assert SubscriberUpdate.model_validate({"expires_at": early}).expires_at == \
            dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    far = SubscriberUpdate.model_validate({"expires_at": "9999-12-31T23:00:00-05:00"}).expires_at
    assert now + dt.timedelta(days=MAX_DAYS - 1) < far <= utcnow() + dt.timedelta(days=MAX_DAYS)
    assert SubscriberBody.model_validate({"username": "abc", "days": 30.0}).days == 30
    for bad in ({"days": 30.5}, {"days": True}, {"days": "30"}, {"expires_at": 1700000000},
                {"expires_at": "2099-01-01T00:00:00"}, {"days": 1, "data_limit_gb": 1e-05}):
        with pytest.raises(PydanticError):
            SubscriberBody.model_validate({"username": "abc", **bad})
    limit = SubscriberBody.model_json_schema()["properties"]["data_limit_gb"]["anyOf"][0]["anyOf"]
    assert limit == [{"type": "number", "minimum": MIB / GIB, "maximum": 1_000_000}, {"type": "number", "const": 0}]
    assert SubscriberBody.model_validate({"username": "abc", "days": 1, "data_limit_gb": MIB / GIB}).data_limit_gb
