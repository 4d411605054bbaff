"""The egress policy as the agent renders it (pure): V2Ray's routing rules and WireGuard's firewall rules
(and that both cores, V2Ray and Xray, accept those rules).

The policy at work, with real V2Ray, WireGuard and traffic in network namespaces, is tests/e2e/test_egress.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from agent.egress import NODE_ITSELF, EgressSpec, egress_from_proto
from agent.v2ray import config as v2config
from agent.v2ray.core import V2RAY, XRAY, Core
from agent.v2ray.spec import Inbound, V2RaySpec, spec_from_proto
from agent.wireguard import nat
from agent.wireguard.model import config_from_proto
from protos import agent_pb2
from tests.v2ray_lab import v2ray_binary, xray_binary

U1 = "0b7e3c5e-1111-4222-8333-444455556666"
API_PORT = 10085


def spec(**egress) -> V2RaySpec:
    return V2RaySpec(inbounds=(Inbound("vm", "vmess", 443, "0.0.0.0"), Inbound("vl", "vless", 8443, "0.0.0.0")),
                     users={"alice": U1}, log_level="warning", egress=EgressSpec(**egress))


def rules(s: V2RaySpec, addresses=("192.0.2.7/32",)) -> list[dict]:
    return v2config.render(s, API_PORT, "a", "e", list(addresses))["routing"]["rules"]


def test_the_policy_is_validated_and_normalised() -> None:
    policy = egress_from_proto(agent_pb2.EgressPolicy(blocked_cidrs=["198.51.100.7", "198.51.100.7/32"],
                                                      allowed_cidrs=["10.20.0.0/16"], block_bittorrent=True))
    assert policy == EgressSpec(blocked=("198.51.100.7/32",), allowed=("10.20.0.0/16",), block_bittorrent=True)
    with pytest.raises(ValueError, match="not a CIDR"):
        egress_from_proto(agent_pb2.EgressPolicy(blocked_cidrs=["nope"]))
    # No exception opens the node itself, however it is spelled.
    for cidr in ("127.0.0.0/8", "0.0.0.0/0", "::/0", "::1/128", "127.0.0.1"):
        with pytest.raises(ValueError, match="would open the node itself"):
            egress_from_proto(agent_pb2.EgressPolicy(allowed_cidrs=[cidr]))
    # A desired part without a policy still gets the built-in one (an older controller).
    assert spec_from_proto(agent_pb2.V2RayConfig()).egress == EgressSpec()


def test_v2ray_routing_blocks_the_node_before_any_exception_and_private_ranges_after() -> None:
    got = rules(spec(blocked=("198.51.100.0/24",), allowed=("10.20.0.0/16",), block_bittorrent=True))
    assert got[0] == {"type": "field", "inboundTag": ["api"], "outboundTag": "api"}
    # a user's inbound never reaches the API port, whatever address it names
    assert got[1] == {"type": "field", "inboundTag": ["vm", "vl"], "port": str(API_PORT), "outboundTag": "blocked"}
    assert got[2] == {"type": "field", "domain": ["full:localhost", "domain:localhost"], "outboundTag": "blocked"}
    assert got[3]["outboundTag"] == "blocked"
    assert got[3]["ip"] == [n.with_prefixlen for n in NODE_ITSELF] + ["192.0.2.7/32"]
    assert got[4] == {"type": "field", "ip": ["10.20.0.0/16"], "outboundTag": "direct"}
    blocked = got[5]["ip"]
    assert got[5]["outboundTag"] == "blocked"
    for cidr in ("10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
                 "240.0.0.0/4", "fc00::/7", "fe80::/10", "ff00::/8", "198.51.100.0/24"):
        assert cidr in blocked
    # V2Ray matches IPv4-mapped destinations as IPv4 (and refuses such a rule): none in the list
    assert not any(c.startswith("::ffff:") for c in blocked)
    assert got[6] == {"type": "field", "protocol": ["bittorrent"], "outboundTag": "blocked"}
    inbounds = v2config.render(spec(block_bittorrent=True), API_PORT, "a", "e")["inbounds"]
    assert all(i["sniffing"] == {"enabled": True, "destOverride": []} for i in inbounds[1:])
    assert "sniffing" not in v2config.render(spec(), API_PORT, "a", "e")["inbounds"][1]


def test_parse_gives_back_the_policy_and_an_older_config_none() -> None:
    for s in (spec(), spec(blocked=("198.51.100.0/24",), allowed=("10.20.0.0/16",), block_bittorrent=True)):
        parsed, port = v2config.parse(v2config.dumps(v2config.render(s, API_PORT, "a", "e", ["192.0.2.7/32"])))
        assert parsed.structure == s.structure and port == API_PORT
    # A config of an agent from before the policy: its V2Ray must be restarted into one that enforces it.
    old = v2config.render(spec(), API_PORT, "a", "e")
    old["routing"] = {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]}
    parsed, _ = v2config.parse(json.dumps(old))
    assert parsed.egress is None and parsed.structure != spec().structure


@pytest.mark.parametrize("core", [V2RAY, XRAY], ids=lambda core: core.name)
def test_both_cores_accept_the_rendered_policy(tmp_path, core: Core) -> None:
    binary = v2ray_binary() if core is V2RAY else xray_binary()
    if binary is None:
        pytest.skip(f"{core.name} is not installed (make test installs it)")
    path = tmp_path / "config.json"
    s = dataclasses.replace(spec(blocked=("198.51.100.0/24", "2001:db8::/32"), allowed=("10.20.0.0/16",),
                                 block_bittorrent=True), core=core.name)
    path.write_bytes(v2config.dumps(v2config.render(s, API_PORT, str(tmp_path / "a"), str(tmp_path / "e"),
                                                    ["192.0.2.7/32", "2001:db8::7/128", "fe80::1/128"])))
    done = subprocess.run(core.test_argv(binary, str(path)), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def wg_spec(peer_to_peer: bool = False, allowed=()):
    config = agent_pb2.WireGuardConfig(
        interfaces=[agent_pb2.WireGuardInterface(
            name="wg0", private_key="yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", listen_port=51820,
            addresses=["10.99.0.1/24", "fd00:99::1/64"], nat=True, peer_to_peer=peer_to_peer)],
        egress=agent_pb2.EgressPolicy(allowed_cidrs=list(allowed)))
    return config_from_proto(config)["wg0"]


def test_wireguard_rejects_the_policy_in_forward_and_exempts_only_what_it_should() -> None:
    text = nat.egress_chain(wg_spec(allowed=["10.20.0.0/16"]), 4, ["192.0.2.7/32"])
    lines = text.splitlines()
    assert lines[:2] == ["*filter", ":VPF-wg0 - [0:0]"] and lines[-1] == "COMMIT"
    body = lines[2:-1]
    # the node itself first, then the exception, then the rest; the interface's own subnet is rejected
    assert body[0] == "-A VPF-wg0 -d 0.0.0.0/8 -j REJECT"
    assert "-A VPF-wg0 -d 192.0.2.7/32 -j REJECT" in body[:4]
    exception = body.index("-A VPF-wg0 -d 10.20.0.0/16 -j RETURN")
    assert body.index("-A VPF-wg0 -d 10.0.0.0/8 -j REJECT") > exception
    assert body.index("-A VPF-wg0 -d 169.254.0.0/16 -j REJECT") > exception
    assert not any("fd00" in line or "::" in line for line in body)  # IPv4 chain only
    v6 = nat.egress_chain(wg_spec(), 6, ["2001:db8::7/128"])
    assert "-A VPF-wg0 -d ::ffff:0:0/96 -j REJECT" in v6 and "-A VPF-wg0 -d fc00::/7 -j REJECT" in v6
    # peer-to-peer: the interface's own subnets go back to FORWARD (still never the node itself)
    p2p = nat.egress_chain(wg_spec(peer_to_peer=True), 4, []).splitlines()
    assert p2p.index("-A VPF-wg0 -d 10.99.0.0/24 -j RETURN") < p2p.index("-A VPF-wg0 -d 10.0.0.0/8 -j REJECT")
    # the jump to the chain is inserted first in FORWARD, the NAT accepts appended after it
    rules_ = nat.iptables_rules(wg_spec(), {4: "eth0", 6: "eth0"})
    jumps = [r for r in rules_ if r.get("insert")]
    assert [r["args"][-1] for r in jumps] == ["VPF-wg0", "VPF-wg0"]


def test_wireguard_nft_script_rejects_before_it_accepts() -> None:
    script = nat.nft_script(wg_spec(allowed=["10.20.0.0/16"]), {4: "eth0", 6: "eth0"}, ["192.0.2.7/32"])
    forward = script[script.index("chain forward"):]
    reject = forward.index('iifname "wg0" ip daddr { 10.0.0.0/8')
    assert forward.index('iifname "wg0" ip daddr { 0.0.0.0/8') < forward.index("10.20.0.0/16") < reject
    assert reject < forward.index('iifname "wg0" accept')
    assert "ip6 daddr" in forward and "masquerade" in script
