"""WireGuard driver pieces that need no root: validation, the UAPI text protocol, the peer diff, traffic
deltas, NAT rule rendering and the telemetry hook. Real tunnels: test_agent_wireguard_netns.py."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from agent.drivers import build_components
from agent.drivers.wireguard import WireGuardComponent
from agent.config import AgentConfig
from agent.spool import Spool
from agent.telemetry import MetricsLoop, Sampler
from agent.wireguard import backend, model, nat, uapi
from agent.wireguard.model import DeviceState, PeerState, config_from_proto, plan_update
from agent.wireguard.traffic import TrafficMeter
from protos import agent_pb2


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def peer(public=None, ips=("10.8.0.2/32",), **kw) -> agent_pb2.WireGuardPeer:
    return agent_pb2.WireGuardPeer(public_key=public or key(), allowed_ips=list(ips), **kw)


def iface(name="wg0", port=51820, peers=(), addresses=("10.8.0.1/24",), **kw) -> agent_pb2.WireGuardInterface:
    return agent_pb2.WireGuardInterface(
        name=name, private_key=kw.pop("private_key", key()), listen_port=port, addresses=list(addresses),
        peers=list(peers), **kw,
    )


def config(*interfaces) -> agent_pb2.WireGuardConfig:
    return agent_pb2.WireGuardConfig(interfaces=list(interfaces))


# -- validation --------------------------------------------------------------------------------------------


def test_a_valid_config_is_normalised():
    a = key()
    specs = config_from_proto(config(iface(peers=[peer(a, ["10.8.0.5/24", " fd00::2/128"], peer_id="p1")], mtu=0)))
    spec = specs["wg0"]
    assert spec.mtu == 1420 and spec.addresses == ("10.8.0.1/24",) and spec.subnets == ["10.8.0.0/24"]
    assert spec.peers[a].allowed_ips == ("10.8.0.0/24", "fd00::2/128")  # host bits cleared, as WireGuard does
    assert spec.peers[a].peer_id == "p1"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (config(iface(name="")), "interface name"),
        (config(iface(name="a-very-long-name0")), "interface name"),
        (config(iface(name="wg 0")), "interface name"),
        (config(iface(private_key="short")), "private_key"),
        (config(iface(private_key=base64.b64encode(b"x" * 31).decode())), "32 bytes"),
        (config(iface(port=70000)), "listen_port"),
        (config(iface(addresses=["10.8.0.1"])), "prefix length"),
        (config(iface(addresses=["10.8.0.300/24"])), "CIDR"),
        (config(iface(mtu=100)), "mtu"),
        (config(iface(peers=[peer("nope")])), "public_key"),
        (config(iface(peers=[peer(preshared_key="!!")])), "preshared_key"),
        (config(iface(peers=[peer(ips=["10.8.0.2/33"])])), "allowed_ips"),
        (config(iface(peers=[peer(persistent_keepalive=70000)])), "persistent_keepalive"),
        (config(iface(), iface()), "listed twice"),
        (config(iface(), iface(name="wg1", addresses=["10.9.0.1/24"])), "listen port 51820 is used by both"),
        (config(iface(), iface(name="wg1", port=51821)), "address 10.8.0.1 is on both"),
        (config(iface(peers=[peer(ips=["10.8.0.2/32"]), peer(ips=["10.8.0.2/32"])])), "routed to two peers"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        config_from_proto(bad)


def test_duplicate_peer_keys_and_own_key_are_refused():
    a = key()
    with pytest.raises(ValueError, match="listed for two peers"):
        config_from_proto(config(iface(peers=[peer(a, ["10.8.0.2/32"]), peer(a, ["10.8.0.3/32"])])))
    private = key()
    own = model.public_key_of(private)
    with pytest.raises(ValueError, match="own public key"):
        config_from_proto(config(iface(private_key=private, peers=[peer(own)])))
    with pytest.raises(ValueError, match="same private key"):
        config_from_proto(
            config(iface(private_key=private), iface(name="wg1", port=1, addresses=[], private_key=private))
        )


def test_nat_without_iptables_or_nft_is_refused_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(nat.shutil, "which", lambda name: None)
    component = WireGuardComponent(tmp_path)
    component.validate(config(iface()))
    with pytest.raises(ValueError, match="neither iptables nor nft"):
        component.validate(config(iface(nat=True)))
    with pytest.raises(ValueError, match="neither iptables nor nft"):
        asyncio.run(component.apply(config(iface(nat=True))))
    assert not (tmp_path / "wireguard").exists()  # nothing was touched


def test_public_key_matches_wg_pubkey_convention():
    private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="  # the key from wg(8)'s example
    assert model.public_key_of(private) == "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="


# -- UAPI ------------------------------------------------------------------------------------------------


def test_render_set_orders_device_keys_then_peers():
    a, b, psk, private = key(), key(), key(), key()
    update = model.DeviceUpdate(
        private_key=private,
        listen_port=51820,
        peers=[
            model.PeerUpdate(a, remove=True),
            model.PeerUpdate(b, preshared_key=psk, endpoint="198.18.0.2:5000", persistent_keepalive=25,
                             allowed_ips=("10.8.0.2/32", "fd00::2/128")),
            model.PeerUpdate(a + "", preshared_key=""),
        ],
    )
    text = uapi.render_set(update)
    hexed = lambda k: base64.b64decode(k).hex()  # noqa: E731
    assert text == (
        f"set=1\nprivate_key={hexed(private)}\nlisten_port=51820\n"
        f"public_key={hexed(a)}\nremove=true\n"
        f"public_key={hexed(b)}\npreshared_key={hexed(psk)}\nendpoint=198.18.0.2:5000\n"
        "persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.8.0.2/32\nallowed_ip=fd00::2/128\n"
        f"public_key={hexed(a)}\npreshared_key={'0' * 64}\n\n"
    )


def test_parse_get_reads_device_and_peers():
    a, private = key(), key()
    hexed = lambda k: base64.b64decode(k).hex()  # noqa: E731
    answer = (
        f"private_key={hexed(private)}\nlisten_port=51820\n"
        f"public_key={hexed(a)}\npreshared_key={'0' * 64}\nprotocol_version=1\nendpoint=198.18.0.2:40000\n"
        "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=250000000\ntx_bytes=10\nrx_bytes=20\n"
        "persistent_keepalive_interval=0\nallowed_ip=10.8.0.2/32\nallowed_ip=10.8.1.0/24\nerrno=0\n\n"
    )
    device = uapi.parse_get(answer)
    assert device.private_key == private and device.listen_port == 51820
    state = device.peers[a]
    assert state.preshared_key == "" and state.endpoint == "198.18.0.2:40000"
    assert (state.rx_bytes, state.tx_bytes, state.last_handshake_ms) == (20, 10, 1_700_000_000_250)
    assert state.allowed_ips == ("10.8.0.2/32", "10.8.1.0/24")


def test_uapi_errno_and_missing_socket(tmp_path):
    with pytest.raises(uapi.UapiError, match="does not answer"):
        uapi.get("wgnothere", directory=str(tmp_path))
    assert not uapi.answers("wgnothere", directory=str(tmp_path))


def test_parse_dump_of_kernel_wireguard():
    a, private, public, psk = key(), key(), key(), key()
    text = (
        f"{private}\t{public}\t51820\toff\n"
        f"{a}\t{psk}\t198.18.0.2:40000\t10.8.0.2/32,fd00::2/128\t1700000000\t20\t10\t25\n"
        f"{public}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
    )
    device = backend.parse_dump(text)
    assert device.private_key == private and device.listen_port == 51820
    assert device.peers[a].allowed_ips == ("10.8.0.2/32", "fd00::2/128")
    assert device.peers[a].persistent_keepalive == 25
    assert device.peers[a].last_handshake_ms == 1_700_000_000_000 and device.peers[a].preshared_key == psk
    assert device.peers[public].allowed_ips == () and device.peers[public].endpoint == ""


# -- the diff ----------------------------------------------------------------------------------------------


def _device(spec: model.InterfaceSpec, **changes) -> DeviceState:
    peers = {
        p: PeerState(p, s.preshared_key, s.allowed_ips, s.persistent_keepalive, "198.18.0.2:1", 5, 6, 7)
        for p, s in spec.peers.items()
    }
    return DeviceState(
        changes.get("private_key", spec.private_key), changes.get("listen_port", spec.listen_port), peers
    )


def test_plan_update_touches_only_what_differs():
    a, b, c = key(), key(), key()
    old = config_from_proto(config(iface(peers=[peer(a, ["10.8.0.2/32"]), peer(b, ["10.8.0.3/32"])])))["wg0"]
    assert not plan_update(_device(old), old)  # in sync: nothing to send

    new_msg = iface(private_key=old.private_key, port=51821,
                    peers=[peer(a, ["10.8.0.2/32"]), peer(c, ["10.8.0.3/32"], persistent_keepalive=25)])
    new = config_from_proto(config(new_msg))["wg0"]
    update = plan_update(_device(old), new)
    assert update.private_key is None and update.listen_port == 51821
    assert [(p.public_key, p.remove) for p in update.peers] == [(b, True), (c, False)]  # a is not mentioned
    assert update.peers[1].allowed_ips == ("10.8.0.3/32",) and update.peers[1].persistent_keepalive == 25

    moved = config_from_proto(config(iface(private_key=old.private_key, peers=[
        peer(a, ["10.8.0.2/32", "10.8.9.0/24"]), peer(b, ["10.8.0.3/32"], preshared_key=key())])))["wg0"]
    update = plan_update(_device(old), moved)
    assert [p.public_key for p in update.peers] == [a, b]
    assert update.peers[0].allowed_ips == ("10.8.0.2/32", "10.8.9.0/24") and update.peers[0].preshared_key is None
    assert update.peers[1].allowed_ips is None and update.peers[1].preshared_key


def test_plan_update_puts_back_endpoints_and_keys():
    a = key()
    spec = config_from_proto(config(iface(peers=[peer(a)])))["wg0"]
    update = plan_update(DeviceState(), spec, endpoints={a: "198.18.0.2:4000"})
    assert update.private_key == spec.private_key and update.listen_port == 51820
    assert update.peers[0].endpoint == "198.18.0.2:4000"


# -- traffic -----------------------------------------------------------------------------------------------


def _state(rx, tx, hs=0, endpoint=""):
    return PeerState("k", rx_bytes=rx, tx_bytes=tx, last_handshake_ms=hs, endpoint=endpoint)


def _take(meter, peers, now_ms=10_000_000, iface="wg0"):
    entries, events = meter.take({iface: (DeviceState(peers=peers), {"A": "peer-a"})}, now_ms=now_ms)
    return {e.public_key: (e.rx_bytes, e.tx_bytes, e.last_handshake_ms, e.peer_id) for e in entries}, events


def test_traffic_deltas_only_for_peers_that_moved(tmp_path):
    meter = TrafficMeter(tmp_path / "t.json")
    meter.reset("wg0")
    now = 10_000_000
    got, events = _take(meter, {"A": _state(100, 50, now - 1000), "B": _state(0, 0)}, now)
    assert got == {"A": (100, 50, now - 1000, "peer-a")}
    assert events == [("info", "wg0: peer peer-a: handshake, session up")]
    got, events = _take(meter, {"A": _state(100, 50, now - 1000), "B": _state(0, 0)}, now)
    assert got == {} and events == []
    got, _ = _take(meter, {"A": _state(30, 20, now - 1000)}, now)  # wireguard-go restarted: counters reset
    assert got == {"A": (30, 20, now - 1000, "peer-a")}
    got, events = _take(meter, {"A": _state(30, 20, now - 1000)}, now + 200_000)
    assert got == {} and events == [("info", "wg0: peer peer-a: no handshake for 180 s, session down")]


def test_traffic_survives_restart_retire_and_give_back(tmp_path):
    path = tmp_path / "t.json"
    meter = TrafficMeter(path)
    meter.reset("wg0")
    _take(meter, {"A": _state(100, 100), "B": _state(10, 10)})
    again = TrafficMeter(path)  # the agent restarted: baselines come from disk
    got, _ = _take(again, {"A": _state(150, 100), "B": _state(10, 10)})
    assert got == {"A": (50, 0, 0, "peer-a")}
    again.retire("wg0", {"B": _state(15, 10)}, {"B": "peer-b"})  # removed: its last bytes still count
    entries, _ = again.take({})
    assert [(e.public_key, e.rx_bytes, e.peer_id) for e in entries] == [("B", 5, "peer-b")]
    again.give_back(entries)  # the batch failed: they ride with the next one, merged with new deltas
    got, _ = _take(again, {"A": _state(160, 100)})
    assert got == {"A": (10, 0, 0, "peer-a"), "B": (5, 0, 0, "peer-b")}


def test_adopted_device_without_baseline_does_not_report_history(tmp_path):
    meter = TrafficMeter(tmp_path / "t.json")
    meter.adopt("wg0", DeviceState(peers={"A": _state(1000, 1000)}))
    got, _ = _take(meter, {"A": _state(1010, 1000)})
    assert got == {"A": (10, 0, 0, "peer-a")}


# -- NAT rendering -----------------------------------------------------------------------------------------


def test_nat_rules_for_v4_and_v6_subnets():
    spec = config_from_proto(config(iface(addresses=["10.8.0.1/24", "fd00:8::1/64"], nat=True)))["wg0"]
    rules = nat.iptables_rules(spec, {4: "eth0", 6: None})
    masq = [r for r in rules if r["chain"] == "POSTROUTING"]
    assert [(r["bin"], r["args"][:4]) for r in masq] == [
        ("iptables", ["-s", "10.8.0.0/24", "-o", "eth0"]),
        ("ip6tables", ["-s", "fd00:8::/64", "!", "-o"]),  # no v6 default route: anything but back into wg0
    ]
    assert all(r["args"][-2:] == ["-j", "MASQUERADE"] for r in masq)
    assert {r["bin"] for r in rules if r["chain"] == "FORWARD"} == {"iptables", "ip6tables"}
    script = nat.nft_script(spec, {4: "eth0", 6: "eth0"})
    assert 'ip saddr 10.8.0.0/24 oifname "eth0" masquerade' in script
    assert 'ip6 saddr fd00:8::/64 oifname "eth0" masquerade' in script
    assert nat.nft_table("wg-0") != nat.nft_table("wg_0")


# -- the component and the telemetry hook ------------------------------------------------------------------


async def test_absent_wireguard_touches_nothing(tmp_path):
    component = WireGuardComponent(tmp_path)
    assert component.name == component.field == "wireguard"
    await component.apply(None)
    assert await component.take_traffic() == []
    assert not (tmp_path / "wireguard").exists()
    await component.close()


def test_build_components_registers_the_drivers_and_their_traffic(tmp_path):
    sources = []
    cfg = AgentConfig(grpc_addr="x:1", enroll_addr="x:2", ca_cert_pem="-----BEGIN CERTIFICATE-----",
                      state_dir=str(tmp_path))
    components = build_components(cfg, lambda s: None, lambda level: None, add_traffic_source=sources.append)
    assert [c.name for c in components] == ["agent", "v2ray", "wireguard"]
    assert sources == components[1:]
    assert {s.traffic_field for s in sources} == {"v2ray_users", "wireguard_peers"}


class FakeSpool:
    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    @property
    def last_seq(self):
        return len(self.calls)

    def append(self, samples, **extra):
        if self.fail:
            raise OSError("disk full")
        self.calls.append((list(samples), extra))
        return agent_pb2.TelemetryBatch(seq=len(self.calls), metrics=samples, **extra)


class FakeSource:
    traffic_field = "wireguard_peers"

    def __init__(self, entries):
        self.entries = entries
        self.given_back = []
        self.taken_for: list[int] = []
        self.spooled_seqs: list[int] = []

    async def take_traffic(self, seq):
        self.taken_for.append(seq)
        entries, self.entries = self.entries, []
        return entries

    def give_back(self, peers):
        self.given_back.extend(peers)

    def spooled(self, seq):
        self.spooled_seqs.append(seq)


async def _one_batch(loop: MetricsLoop):
    loop.interval_seconds = 0.01
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_metrics_loop_adds_traffic_to_the_batch():
    spool = FakeSpool()
    entry = agent_pb2.PeerTraffic(interface="wg0", public_key="A", rx_bytes=5)
    source = FakeSource([entry])
    batches = []
    loop = MetricsLoop(Sampler(), spool, 3600, on_batch=batches.append, traffic_sources=[source])
    await _one_batch(loop)
    assert list(batches[0].wireguard_peers) == [entry]
    assert spool.calls[0][1] == {"wireguard_peers": [entry]}
    assert all(extra == {} for _, extra in spool.calls[1:])  # nothing moved: a plain sample batch
    # each take names the batch it rides in, and the source hears when that batch is on disk
    assert source.taken_for[0] == 1 and source.spooled_seqs[:3] == [0, 1, 2]


async def test_metrics_loop_gives_traffic_back_when_the_spool_fails():
    entry = agent_pb2.PeerTraffic(interface="wg0", public_key="A", rx_bytes=5)
    source = FakeSource([entry])
    loop = MetricsLoop(Sampler(), FakeSpool(fail=True), 3600)
    loop.add_traffic_source(source)
    await _one_batch(loop)
    assert source.given_back == [entry]


async def test_metrics_loop_without_sources_spools_samples_as_before(tmp_path):
    spool = Spool(tmp_path, max_batches=10)
    loop = MetricsLoop(Sampler(), spool, 3600)
    await _one_batch(loop)
    batches = spool.pending()
    assert batches and all(len(b.metrics) == 1 and not b.wireguard_peers for b in batches)
