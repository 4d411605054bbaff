"""A node's core and transport profiles: REALITY keys, the desired V2Ray part, the API's rules, the move of
nodes from before cores, and what subscriptions get. Real SQLite, real services, no processes."""

from __future__ import annotations

import dataclasses

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from pydantic import ValidationError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from controller import reality
from controller.credentials import new_secret
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import ValidationFailed
from controller.events import EventBus
from controller.models import Node, Subscriber, utcnow
from controller.schemas.nodes import NodeCreate, NodeUpdate, RealityInput
from controller.serializers import node_to_dict
from controller.services.desired_state import (build_inbounds, is_legacy, node_v2ray_inbounds, profile_set,
                                               v2ray_desired)
from controller.services.nodes import NodeService
from controller.services.subscribers import SubscriberService, endpoint_credentials
from controller.settings import RegionSettings, Settings, SettingsError, TlsSettings, XrayRelease, load_settings
from controller.share_links import render

TLS = TlsSettings(domain="vpn.example.com", certificate_file="/etc/vpnfleet/tls/cert.pem",
                  key_file="/etc/vpnfleet/tls/key.pem")


# -- keys and values ------------------------------------------------------------------------------------------

def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_keypair_is_x25519_in_base64url_without_padding() -> None:
    seen = set()
    for _ in range(50):
        private, public = reality.new_keypair()
        assert len(private) == len(public) == 43 and "=" not in private + public
        assert set(private + public) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        raw = _unb64url(private)
        assert len(raw) == 32
        expected = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert _unb64url(public) == expected
        assert reality.public_key_of(private) == public
        seen.add(private)
    assert len(seen) == 50


def test_public_key_of_a_known_private_key() -> None:
    private = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
    expected = X25519PrivateKey.from_private_bytes(bytes(range(32))).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    assert reality.public_key_of(private) == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()


@pytest.mark.parametrize("bad", ["", "abc", "A" * 42, "A" * 44, "A" * 43 + "=", "A" * 42 + "B",  # B: stray bits
                                 "+" * 43, "/" * 43, None, 7])
def test_malformed_keys_are_refused_without_echoing_them(bad: Any) -> None:
    for check in (reality.check_private_key, reality.check_public_key, reality.public_key_of):
        with pytest.raises(ValueError) as caught:
            check(bad)
        assert (not isinstance(bad, str) or len(bad) < 8) or bad not in str(caught.value)


def test_short_ids() -> None:
    ids = {reality.new_short_id() for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    for good in ("", "ab", "0123456789abcdef", "ABCD"):
        assert reality.check_short_id(good) == good.lower()
    for bad in ("a", "abc", "0123456789abcdef00", "zz", "0x12", "ab cd", None):
        with pytest.raises(ValueError, match="hex"):
            reality.check_short_id(bad)  # type: ignore[arg-type]
    assert reality.check_short_ids(["AB", "cd"]) == ["ab", "cd"]
    for bad in ([], ["ab", "ab"], [""], ["ab"] * 9, "ab"):
        with pytest.raises(ValueError):
            reality.check_short_ids(bad)


def test_dest_and_server_names() -> None:
    assert reality.check_dest("www.microsoft.com:443") == "www.microsoft.com:443"
    assert reality.check_dest("WWW.Apple.com:8443") == "www.apple.com:8443"
    assert reality.check_dest("[2001:db8::1]:443") == "[2001:db8::1]:443"
    assert reality.check_dest("192.0.2.1:443") == "192.0.2.1:443"
    # REALITY forwards unauthenticated connections to dest: never to something on or behind the node
    for inside in ("127.0.0.1:443", "10.1.2.3:443", "169.254.169.254:80", "[::1]:443", "[fd00::1]:443"):
        with pytest.raises(ValueError, match="must be a public site"):
            reality.check_dest(inside)
    for bad in ("www.microsoft.com", "www.microsoft.com:0", "www.microsoft.com:70000", "a b:443", "2001:db8::1:443",
                ":443", "-bad-.com:443", "host:https", None):
        with pytest.raises(ValueError, match="host"):
            reality.check_dest(bad)  # type: ignore[arg-type]
    assert reality.check_server_names(["WWW.Microsoft.com", "www.microsoft.com"]) == ["www.microsoft.com"]
    for bad in ([], "www.microsoft.com", ["192.0.2.1"], ["a b"], [""]):
        with pytest.raises(ValueError):
            reality.check_server_names(bad)
    reality.check_target("www.microsoft.com:443", ["www.microsoft.com"])
    reality.check_target("192.0.2.1:443", ["www.microsoft.com"])  # an address: the operator's word
    with pytest.raises(ValueError, match="server names"):
        reality.check_target("www.google.com:443", ["www.microsoft.com"])  # Marzban's mistake (Xray#2251)


def test_settings(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert (s.v2ray_core, s.reality_dest, s.reality_server_names, s.v2ray_tls) == \
        ("xray", "www.microsoft.com:443", ("www.microsoft.com",), None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
v2ray:
  core: v2ray
  reality: {dest: "www.apple.com:443", server_names: [www.apple.com, images.apple.com]}
  tls: {domain: vpn.example.com, certificate_file: /etc/tls/c.pem, key_file: /etc/tls/k.pem, vless_port: 2083}
aws:
  regions:
    ap-east-1: {template_id: lt-1, reality_dest: "www.samsung.com:443", reality_server_names: [www.samsung.com]}
    us-west-2: {template_id: lt-2}
""")
    s = load_settings(cfg, env={"VPNFLEET_V2RAY_CORE": "xray"})
    assert s.v2ray_core == "xray"
    assert s.reality_target("us-west-2") == ("www.apple.com:443", ("www.apple.com", "images.apple.com"))
    assert s.reality_target("ap-east-1") == ("www.samsung.com:443", ("www.samsung.com",))
    assert s.v2ray_tls == TlsSettings(domain="vpn.example.com", certificate_file="/etc/tls/c.pem",
                                      key_file="/etc/tls/k.pem", vmess_port=8443, vless_port=2083)


@pytest.mark.parametrize("text,message", [
    ("v2ray: {core: singbox}", "v2ray.core"),
    ("v2ray: {reality: {dest: www.microsoft.com}}", "v2ray.reality.dest"),
    ("v2ray: {reality: {dest: 'www.google.com:443'}}", "server names"),
    ("v2ray: {reality: {server_names: ['1.2.3.4']}}", "server_names"),
    ("v2ray: {tls: {domain: vpn.example.com, certificate_file: cert.pem, key_file: /k.pem}}", "absolute"),
    ("v2ray: {tls: {domain: '', certificate_file: /c.pem, key_file: /k.pem}}", "v2ray.tls.domain"),
    ("v2ray: {tls: {domain: a.example, certificate_file: /c.pem, key_file: /k.pem, vmess_port: 11994}}", "differ"),
    ("v2ray: {tls: {domain: a.example, certificate_file: /c.pem, key_file: /k.pem, colour: red}}", "colour"),
    ("aws: {regions: {r1: {reality_dest: 'nope'}}}", "aws.regions.r1.reality_dest"),
    ("aws: {regions: {r1: {reality_dest: 'www.apple.com:443'}}}", "server names"),
])
def test_bad_profile_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(cfg, env={})


# -- profile sets ---------------------------------------------------------------------------------------------

def test_profile_sets_never_carry_plain_vless() -> None:
    assert profile_set("xray", False) == ["vmess", "vless-reality-vision"]
    assert profile_set("v2ray", False) == ["vmess"]
    assert profile_set("xray", True) == ["vmess", "vless-reality-vision", "vmess-ws-tls", "vless-ws-tls"]
    assert profile_set("v2ray", True) == ["vmess", "vmess-ws-tls", "vless-ws-tls"]
    ports = {slot: {"port": p, "listen": ""} for slot, p in
             {"vmess": 1, "vless": 2, "vmess-ws-tls": 3, "vless-ws-tls": 4}.items()}
    for core in ("xray", "v2ray"):
        for tls in (False, True):
            for inbound in build_inbounds(core, ports, tls):
                assert inbound["profile"] and inbound["tag"] == inbound["profile"]
                assert inbound["protocol"] == ("vless" if inbound["profile"].startswith("vless") else "vmess")


# -- the node service -----------------------------------------------------------------------------------------

class FakeHub:
    def __init__(self) -> None:
        self.dirty: list[str] = []
        self.on_connected = None
        self.sessions: dict = {}

    def mark_dirty(self, nodes) -> None:  # noqa: ANN001
        self.dirty.extend(nodes)


class FakeProvider:
    name = "local"

    def service_ports(self, defaults: dict[str, int]) -> tuple[str, dict[str, int]]:
        return "", dict(defaults)


class Fleet:
    def __init__(self, tmp_path: Path, settings: Settings) -> None:
        self.tmp_path = tmp_path
        self.engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
        self.sessions = make_sessionmaker(self.engine)
        self.hub = FakeHub()
        self.bus = EventBus()
        self.events = self.bus.subscribe()
        #: what the controller serves its nodes as Xray (None: it has no Xray binary)
        self.xray_bundle: object | None = object()
        self.nodes = self.service(settings)

    def service(self, settings: Settings) -> NodeService:
        svc = NodeService(settings, self.sessions, {"local": FakeProvider(), "ec2": FakeProvider()}, None,  # type: ignore[arg-type]
                          self.hub, self.bus, b"", lambda: None,  # type: ignore[arg-type]
                          xray_bundle=lambda: self.xray_bundle)  # type: ignore[arg-type,return-value]
        svc._drive = lambda *a, **k: None  # type: ignore[method-assign]  # no machines here
        return svc

    async def node(self, node_id: str) -> Node:
        async with self.sessions() as s:
            return await s.scalar(select(Node).where(Node.uuid == node_id))

    async def desired(self, node_id: str, settings: Settings | None = None):  # noqa: ANN201
        async with self.sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id))
            return (await v2ray_desired(s, [node], settings or self.nodes.settings))[node_id]


def new(region: str, name: str | None = None, **body: Any) -> NodeCreate:
    """The typed command of POST /api/v1/nodes, validated as the route validates its body."""
    return NodeCreate.model_validate({"region": region, **({"name": name} if name else {}), **body})


def _settings(**kw: Any) -> Settings:
    regions = (RegionSettings(code="ap-east-1", name="HK", provider="ec2", reality_dest="www.samsung.com:443",
                              reality_server_names=("www.samsung.com",)),)
    return Settings(**({"regions": regions} | kw))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    f = Fleet(tmp_path, _settings())
    await prepare_database(f.engine)
    yield f
    await f.engine.dispose()


async def test_a_new_node_is_xray_with_vmess_and_reality(fleet: Fleet) -> None:
    node, created = await fleet.nodes.create(new("local", "tokyo"))
    assert created and node.core == "xray" and not is_legacy(node)
    assert [(i["profile"], i["protocol"], i["port"]) for i in node.v2ray_inbounds] == \
        [("vmess", "vmess", 11994), ("vless-reality-vision", "vless", 11995)]
    assert reality.public_key_of(node.reality_private_key) == node.reality_public_key
    assert len(node.reality_short_ids) == 1 and len(node.reality_short_ids[0]) == 16
    assert node.ws_path.startswith("/") and set(node.v2ray_ports) == {"vmess", "vless"}
    part = await fleet.desired(node.uuid)
    assert part.core == "xray"
    vmess, vless = part.inbounds
    assert (vmess.tag, vmess.protocol, vmess.port, vmess.profile) == ("vmess", "vmess", 11994, "vmess")
    assert not vmess.HasField("reality") and not vmess.HasField("tls")
    assert (vless.protocol, vless.port, vless.profile) == ("vless", 11995, "vless-reality-vision")
    assert vless.reality.private_key == node.reality_private_key
    assert list(vless.reality.short_ids) == node.reality_short_ids
    assert (vless.reality.dest, list(vless.reality.server_names)) == ("www.microsoft.com:443", ["www.microsoft.com"])
    other, _ = await fleet.nodes.create(new("local", "osaka"))
    assert other.reality_private_key != node.reality_private_key  # a key pair per node
    assert other.reality_short_ids != node.reality_short_ids and other.ws_path != node.ws_path


async def test_without_an_xray_binary_new_nodes_run_v2ray_and_asking_for_xray_is_refused(fleet: Fleet) -> None:
    """A node can only run Xray if the controller has a binary to install on it (controller/core_bundle.py)."""
    fleet.xray_bundle = None
    node, _ = await fleet.nodes.create(new("local", "no-xray"))
    assert node.core == "v2ray" and [i["profile"] for i in node.v2ray_inbounds] == ["vmess"]
    with pytest.raises(ValidationFailed) as refused:
        await fleet.nodes.create(new("local", "wants-xray", core="xray"))
    assert "core" in refused.value.details


async def test_nodes_get_xray_from_the_operators_release_mirror_or_the_controller(fleet: Fleet) -> None:
    """v2ray.xray_release names where nodes download the pinned Xray (checked against its sha256); without it
    they download the controller's own binary (sha256-pinned; the enrollment token is in no URL)."""
    class Bundle:
        filename, sha256, arch = "xray-26.3.27-linux-amd64", "b" * 64, "amd64"

    fleet.xray_bundle = Bundle()
    own = fleet.nodes._xray_download("tok-1")
    assert own is not None and own.url.endswith("/agent/package/xray-26.3.27-linux-amd64")
    assert "tok-1" not in own.url
    assert own.sha256 == "b" * 64
    release = XrayRelease(url="https://mirror.example.net/xray-26.3.27", sha256="a" * 64, version="26.3.27")
    mirrored = fleet.service(dataclasses.replace(fleet.nodes.settings, xray_release=release))
    fleet.xray_bundle = None  # the controller has none: the mirror is enough for xray nodes
    got = mirrored._xray_download("tok-2")
    assert (got.url, got.sha256, got.filename, got.arch) == (release.url, "a" * 64, "xray-26.3.27-linux-amd64",
                                                             "amd64")
    node, _ = await mirrored.create(new("local", "mirrored", core="xray"))
    assert node.core == "xray"


async def test_a_v2ray_node_serves_vmess_only_and_region_targets_apply(fleet: Fleet) -> None:
    node, _ = await fleet.nodes.create(new("local", core="v2ray"))
    part = await fleet.desired(node.uuid)
    assert part.core == "v2ray" and [i.profile for i in part.inbounds] == ["vmess"]
    hk, _ = await fleet.nodes.create(new("ap-east-1"))
    rs = (await fleet.desired(hk.uuid)).inbounds[1].reality
    assert (rs.dest, list(rs.server_names)) == ("www.samsung.com:443", ["www.samsung.com"])
    own, _ = await fleet.nodes.create(new("ap-east-1", reality={"dest": "www.apple.com:443",
                                                                      "server_names": ["www.apple.com"],
                                                                      "short_ids": ["abcd", "ef01"]}))
    rs = (await fleet.desired(own.uuid)).inbounds[1].reality
    assert (rs.dest, list(rs.server_names), list(rs.short_ids)) == \
        ("www.apple.com:443", ["www.apple.com"], ["abcd", "ef01"])


async def test_ws_tls_profiles_only_with_v2ray_tls(fleet: Fleet) -> None:
    settings = _settings(v2ray_tls=TLS)
    svc = fleet.service(settings)
    node, _ = await svc.create(new("local"))
    assert [i["profile"] for i in node.v2ray_inbounds] == ["vmess", "vless-reality-vision", "vmess-ws-tls",
                                                           "vless-ws-tls"]
    part = await fleet.desired(node.uuid, settings)
    ws = {i.profile: i for i in part.inbounds}
    for profile, port in (("vmess-ws-tls", 8443), ("vless-ws-tls", 2053)):
        i = ws[profile]
        assert i.port == port and i.ws_path == node.ws_path and not i.HasField("reality")
        assert (i.tls.certificate_file, i.tls.key_file, i.tls.server_name) == \
            (TLS.certificate_file, TLS.key_file, "vpn.example.com")
    # v2ray.tls removed from the settings: never a TLS inbound without its files (and the stored set follows)
    plain = _settings()
    assert [i.profile for i in (await fleet.desired(node.uuid, plain)).inbounds] == ["vmess", "vless-reality-vision"]
    fleet.nodes = fleet.service(plain)
    assert await fleet.nodes.refresh_profiles() == 1
    assert [i["profile"] for i in (await fleet.node(node.uuid)).v2ray_inbounds] == ["vmess", "vless-reality-vision"]
    # and configured again: the ports set aside stay the node's
    fleet.nodes = fleet.service(settings)
    await fleet.nodes.refresh_profiles()
    again = await fleet.node(node.uuid)
    assert [i["port"] for i in again.v2ray_inbounds] == [11994, 11995, 8443, 2053]


async def test_every_rendered_vless_inbound_has_reality_or_tls(fleet: Fleet) -> None:
    settings = _settings(v2ray_tls=TLS)
    svc = fleet.service(settings)
    for core in ("xray", "v2ray"):
        node, _ = await svc.create(new("local", core=core))
        for inbound in (await fleet.desired(node.uuid, settings)).inbounds:
            if inbound.protocol == "vless":
                assert inbound.profile in ("vless-reality-vision", "vless-ws-tls")
                assert inbound.reality.private_key or inbound.tls.certificate_file


@pytest.mark.parametrize("kwargs,field", [
    ({"core": "sing-box"}, "core"),
    ({"core": "v2ray", "reality": {"dest": "www.apple.com:443"}}, "reality"),
    ({"reality": {"dest": "www.apple.com"}}, "reality.dest"),
    ({"reality": {"dest": "www.apple.com:443"}}, "reality.dest"),  # does not serve www.microsoft.com
    ({"reality": {"server_names": ["www.apple.com"]}}, "reality.server_names"),  # dest is microsoft
    ({"reality": {"server_names": ["203.0.113.1"]}}, "reality.server_names"),
    ({"reality": {"short_ids": ["xyz"]}}, "reality.short_ids"),
    ({"reality": {"short_ids": ["abc"]}}, "reality.short_ids"),
    ({"reality": {"short_ids": None}}, "reality.short_ids"),
    ({"reality": {"private_key": "A" * 43}}, "reality.private_key"),
])
async def test_create_refuses_bad_input_naming_the_field(fleet: Fleet, kwargs: dict, field: str) -> None:
    # refused by the body model (what the route declares) or by the service, either way naming the field
    with pytest.raises((ValidationFailed, ValidationError)) as caught:
        await fleet.nodes.create(new("local", **kwargs))
    if isinstance(caught.value, ValidationError):
        named = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    else:
        named = set(caught.value.details)
    assert field in named, named
    async with fleet.sessions() as s:
        assert (await s.scalars(select(Node))).all() == []


async def test_patch_core_is_one_revision_and_reality_changes_too(fleet: Fleet) -> None:
    node, _ = await fleet.nodes.create(new("local"))
    rev = node.desired_revision
    same = await fleet.nodes.update_v2ray(node.uuid, "xray")  # no change: no new revision, no push
    assert same.desired_revision == rev and fleet.hub.dirty == []
    down = await fleet.nodes.update_v2ray(node.uuid, "v2ray")
    assert down.desired_revision == rev + 1 and fleet.hub.dirty == [node.uuid]
    assert [i["profile"] for i in down.v2ray_inbounds] == ["vmess"]
    assert node_to_dict(down)["core"] == "v2ray"
    with pytest.raises(ValidationFailed) as caught:  # REALITY on a v2ray node
        await fleet.nodes.update_v2ray(node.uuid, reality_change=RealityInput(short_ids=["ab"]))
    assert "reality" in caught.value.details
    up = await fleet.nodes.update_v2ray(node.uuid, "xray", RealityInput(dest="www.apple.com:443",
                                                                         server_names=["www.apple.com"]))
    assert up.desired_revision == rev + 2  # the core and the target together: one revision
    assert [(i["profile"], i["port"]) for i in up.v2ray_inbounds] == [("vmess", 11994), ("vless-reality-vision", 11995)]
    assert up.reality_private_key == node.reality_private_key  # the key pair is the node's for life
    rs = (await fleet.desired(node.uuid)).inbounds[1].reality
    assert (rs.dest, list(rs.server_names)) == ("www.apple.com:443", ["www.apple.com"])
    back = await fleet.nodes.update_v2ray(node.uuid, reality_change=RealityInput(dest=None, server_names=None))
    assert back.desired_revision == rev + 3 and (back.reality_dest, back.reality_server_names) == (None, None)
    with pytest.raises(ValidationFailed) as caught:
        await fleet.nodes.update_v2ray(node.uuid, reality_change=RealityInput(dest="nope"))
    assert "reality.dest" in caught.value.details
    assert (await fleet.node(node.uuid)).desired_revision == rev + 3  # a refused PATCH changes nothing


# -- nodes from before cores ----------------------------------------------------------------------------------

OLD_INBOUNDS = [{"tag": "vmess", "protocol": "vmess", "port": 21000, "listen": "127.0.0.1"},
                {"tag": "vless", "protocol": "vless", "port": 21001, "listen": "127.0.0.1"}]


async def _legacy_node(fleet: Fleet, capabilities: list[str], inbounds: list[dict] | None = OLD_INBOUNDS) -> Node:
    """A node as migration 0007 leaves one made before cores: core v2ray, the old vmess + plain vless inbounds
    (None: a node from before V2Ray, on the settings' ports)."""
    async with fleet.sessions() as s:
        node = Node(name="old", region="local", provider="local", status="running", core="v2ray",
                    public_ip="203.0.113.20", capabilities=capabilities, desired_revision=7, applied_revision=7,
                    v2ray_inbounds=[dict(i) for i in inbounds] if inbounds is not None else None)
        s.add(node)
        await s.commit()
    return await fleet.node(node.uuid)


async def test_a_node_from_before_cores_moves_to_xray_when_its_agent_has_it(fleet: Fleet) -> None:
    node = await _legacy_node(fleet, ["v2ray", "xray", "tcping"])
    assert is_legacy(node)
    # rendered as what it becomes, before anything is stored: the old VLESS port serves REALITY
    part = await fleet.desired(node.uuid)
    assert part.core == "xray"
    assert [(i.profile, i.port, i.listen) for i in part.inbounds] == \
        [("vmess", 21000, "127.0.0.1"), ("vless-reality-vision", 21001, "127.0.0.1")]
    await fleet.nodes.agent_connected(node.uuid)
    moved = await fleet.node(node.uuid)
    assert not is_legacy(moved) and moved.core == "xray" and moved.desired_revision == 8
    assert fleet.hub.dirty == [node.uuid]
    assert [(i["profile"], i["port"]) for i in moved.v2ray_inbounds] == \
        [("vmess", 21000), ("vless-reality-vision", 21001)]
    assert (await fleet.desired(node.uuid)) == part  # what was pushed already: the agent does nothing more
    await fleet.nodes.agent_connected(node.uuid)  # the next Hello: nothing left to move
    assert (await fleet.node(node.uuid)).desired_revision == 8


async def test_a_node_from_before_cores_without_xray_stays_on_v2ray_with_vmess_only(fleet: Fleet) -> None:
    node = await _legacy_node(fleet, ["v2ray"])
    await fleet.nodes.agent_connected(node.uuid)
    kept = await fleet.node(node.uuid)
    assert is_legacy(kept) and kept.desired_revision == 7 and fleet.hub.dirty == []
    part = await fleet.desired(node.uuid)
    assert part.core == "v2ray" and [(i.profile, i.port) for i in part.inbounds] == [("vmess", 21000)]
    shown = node_to_dict(kept)
    assert shown["core"] == "v2ray" and [i["profile"] for i in shown["v2ray_inbounds"]] == ["vmess"]
    # its agent gets Xray later: the next Hello moves it
    async with fleet.sessions() as s:
        row = await s.get(Node, kept.id)
        row.capabilities = ["v2ray", "xray"]
        await s.commit()
    await fleet.nodes.agent_connected(node.uuid)
    assert (await fleet.node(node.uuid)).core == "xray"


async def test_an_operator_can_keep_a_node_from_before_cores_on_v2ray(fleet: Fleet) -> None:
    node = await _legacy_node(fleet, ["v2ray", "xray"], inbounds=None)  # before V2Ray even: settings' ports
    kept = await fleet.nodes.update_v2ray(node.uuid, "v2ray")
    assert not is_legacy(kept) and kept.core == "v2ray" and kept.desired_revision == 8
    assert [(i["profile"], i["port"], i["listen"]) for i in kept.v2ray_inbounds] == [("vmess", 11994, "")]
    await fleet.nodes.agent_connected(node.uuid)
    assert (await fleet.node(node.uuid)).core == "v2ray"  # not moved again


async def test_migration_0007_gives_existing_nodes_keys_and_the_legacy_shape(tmp_path: Path) -> None:
    """Upgrade a database from 0006 with a node in it: the node gets core v2ray, a REALITY key pair that
    pairs, a short id and a ws path; its inbounds keep the shape that marks it as from before cores."""
    from alembic import command

    from controller.migrations import alembic_config

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")

    def upgrade(conn, target: str) -> None:  # noqa: ANN001
        command.upgrade(alembic_config(conn), target)

    async with engine.begin() as conn:
        await conn.run_sync(upgrade, "0006")
        await conn.exec_driver_sql(
            "INSERT INTO nodes (uuid, name, region, region_name, provider, status, status_changed_at, is_deleted, "
            "created_at, updated_at, online, capabilities, session_epoch, desired_revision, applied_revision, "
            "component_status, agent_settings, telemetry_seq, telemetry_dropped, v2ray_inbounds) VALUES "
            "('11111111-1111-4111-8111-111111111111', 'old', 'local', 'Local', 'local', 'running', "
            "'2026-11-01 00:00:00', 0, '2026-11-01 00:00:00', '2026-11-01 00:00:00', 0, '[]', 0, 3, 3, '[]', '{}', 0, 0, "
            "'[{\"tag\": \"vmess\", \"protocol\": \"vmess\", \"port\": 11994, \"listen\": \"\"}, "
            "{\"tag\": \"vless\", \"protocol\": \"vless\", \"port\": 11995, \"listen\": \"\"}]')")
        await conn.run_sync(upgrade, "head")
    await prepare_database(engine)  # what the controller does at start: nothing left to do
    async with make_sessionmaker(engine)() as s:
        node = await s.scalar(select(Node))
    await engine.dispose()
    assert node.core == "v2ray" and is_legacy(node)
    assert reality.public_key_of(node.reality_private_key) == node.reality_public_key
    assert len(node.reality_short_ids) == 1 and reality.check_short_id(node.reality_short_ids[0])
    assert node.ws_path.startswith("/")
    assert [i["profile"] for i in node_v2ray_inbounds(node, 11994, 11995)] == ["vmess"]


# -- what leaves the controller -------------------------------------------------------------------------------

async def test_the_private_key_is_never_in_the_node_json_or_its_events(fleet: Fleet) -> None:
    node, _ = await fleet.nodes.create(new("local", reality={"short_ids": ["ab"]}))
    await fleet.nodes.update_v2ray(node.uuid, "v2ray")
    await fleet.nodes.update_v2ray(node.uuid, "xray")
    shown = node_to_dict(await fleet.node(node.uuid))
    assert shown["core"] == "xray"
    assert [(i["profile"], i["port"]) for i in shown["v2ray_inbounds"]] == [("vmess", 11994),
                                                                           ("vless-reality-vision", 11995)]
    assert shown["reality"] == {"public_key": node.reality_public_key, "short_ids": ["ab"], "dest": None,
                                "server_names": None}
    texts = [json.dumps(shown)]
    while not fleet.events.queue.empty():
        texts.append(json.dumps(fleet.events.queue.get_nowait().data))
    assert len(texts) >= 4  # create + two updates
    for text in texts:
        assert node.reality_private_key not in text and "private_key" not in text


def test_the_api_never_takes_a_reality_key_or_inbounds() -> None:
    from pydantic import ValidationError

    for model, base in ((NodeCreate, {"region": "local"}), (NodeUpdate, {})):
        for extra, field in (({"reality": {"private_key": "A" * 43}}, "reality.private_key"),
                             ({"reality": {"public_key": "A" * 43}}, "reality.public_key"),
                             ({"reality": {"short_ids": "ab"}}, "reality.short_ids"),
                             ({"reality": {"colour": "red"}}, "reality.colour"),
                             ({"core": "sing-box"}, "core"),
                             ({"v2ray_inbounds": [{"tag": "vless", "protocol": "vless", "port": 443}]},
                              "v2ray_inbounds")):
            with pytest.raises(ValidationError) as caught:
                model.model_validate(base | extra)
            assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [field]
    schema = json.dumps(NodeUpdate.model_json_schema())
    assert "private_key" not in schema and "v2ray_inbounds" not in schema


# -- subscriptions --------------------------------------------------------------------------------------------

async def test_subscriptions_carry_the_nodes_stable_public_values(fleet: Fleet) -> None:
    settings = _settings(v2ray_tls=TlsSettings(domain="vpn.example.com", certificate_file="/c.pem",
                                               key_file="/k.pem", address="cdn.example.net"))
    svc = fleet.service(settings)
    node, _ = await svc.create(new("local", "tokyo"))
    legacy = await _legacy_node(fleet, ["v2ray"])
    async with fleet.sessions() as s:
        for row in (await s.scalars(select(Node))).all():
            row.public_ip = row.public_ip or "203.0.113.10"
            row.status = "running"
        sub = Subscriber(username="alice", credential_uuid="3f1c2b4a-9d8e-4f70-a1b2-c3d4e5f60718",
                         credential_secret=new_secret(), short_uuid="s" * 22, status="active",
                         expires_at=utcnow() + dt.timedelta(days=1), used_upload_bytes=0, used_download_bytes=0)
        s.add(sub)
        await s.commit()
    subs = SubscriberService(settings, fleet.sessions, fleet.hub)  # type: ignore[arg-type]
    endpoints = await subs.endpoints(sub)
    assert endpoints == await subs.endpoints(sub)  # the same on every fetch
    by_name = {e.name: e for e in endpoints}
    assert set(by_name) == {"tokyo vmess", "tokyo vless", "tokyo vmess-ws", "tokyo vless-ws", "old vmess",
                            "old vmess-ws", "old vless-ws"}
    r = by_name["tokyo vless"]
    assert (r.profile, r.host, r.port, r.sni, r.public_key, r.short_id, r.fingerprint) == \
        ("vless-reality-vision", "203.0.113.10", 11995, "www.microsoft.com", node.reality_public_key,
         node.reality_short_ids[0], "chrome")
    w = by_name["tokyo vless-ws"]
    assert (w.profile, w.host, w.port, w.sni, w.ws_host, w.ws_path) == \
        ("vless-ws-tls", "cdn.example.net", 2053, "vpn.example.com", "vpn.example.com", node.ws_path)
    assert by_name["old vmess"].port == 21000  # a node from before cores: its old port, VMess only
    assert not any(e.protocol == "vless" and e.node_id == legacy.uuid and e.security == "none" for e in endpoints)
    body, _ = render("base64", endpoints, endpoint_credentials(sub))
    links = base64.b64decode(body).decode().split("\n")
    reality_links = [line for line in links if "security=reality" in line]
    assert len(reality_links) == 1 and f"pbk={node.reality_public_key}" in reality_links[0]
    assert all("security=" in line for line in links if line.startswith("vless://"))
    assert node.reality_private_key not in body + render("sing-box-tun", endpoints, endpoint_credentials(sub))[0]


async def test_render_fingerprint_moves_every_node_once(tmp_path: Path) -> None:
    """An upgraded controller's fingerprint differs from the one stored before cores: every node gets one new
    revision; the same settings again change nothing; configuring v2ray.tls or a REALITY target changes it."""
    from controller.app import Controller

    async def fingerprint(settings: Settings) -> dict:
        ctl = Controller(settings)
        try:
            return ctl.render_fingerprint()
        finally:
            await ctl.engine.dispose()

    base = await fingerprint(Settings(data_dir=tmp_path / "d"))
    assert base["profiles"] == "cores-v1"
    assert await fingerprint(Settings(data_dir=tmp_path / "d")) == base
    assert await fingerprint(Settings(data_dir=tmp_path / "d", v2ray_tls=TLS)) != base
    assert await fingerprint(Settings(data_dir=tmp_path / "d", reality_dest="www.apple.com:443",
                                      reality_server_names=("www.apple.com",))) != base
    before_cores = {k: v for k, v in base.items()
                    if k not in ("profiles", "reality_dest", "reality_server_names", "reality_regions", "v2ray_tls")}

    fleet = Fleet(tmp_path, _settings())
    await prepare_database(fleet.engine)
    legacy = await _legacy_node(fleet, [])
    assert await fleet.nodes.refresh_desired_states(before_cores)  # the last start before the upgrade
    rev = (await fleet.node(legacy.uuid)).desired_revision
    assert await fleet.nodes.refresh_desired_states(base)  # the upgraded controller
    assert (await fleet.node(legacy.uuid)).desired_revision == rev + 1
    assert not await fleet.nodes.refresh_desired_states(base)
    assert (await fleet.node(legacy.uuid)).desired_revision == rev + 1
    await fleet.engine.dispose()
