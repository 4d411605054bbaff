"""The WireGuard driver against real tunnels: wireguard-go in network namespaces this test creates.

Topology (all inside namespaces; the host is never touched):

    cli-a  wga<tag> 10.77.0.2 --veth 198.18.0.2/30 -- 198.18.0.1 srv wgs<tag> 10.77.0.1/24 (driver, echo :7000)
    cli-b  wgb<tag> 10.77.0.3 --veth 198.18.0.6/30 -- 198.18.0.5 srv

The driver runs in its own process in srv (tests/agent/netns.py `agent`), like the agent would; the
clients are configured with `wg` directly.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

from protos import agent_pb2
from tests.agent.netns import AgentHarness, Lab, missing_prerequisite, run, wait_for

pytestmark = pytest.mark.timeout(60)

_MISSING = missing_prerequisite()
if _MISSING:
    pytest.skip(f"WireGuard namespace tests: {_MISSING}", allow_module_level=True)

OK = agent_pb2.ComponentStatus.OK
FAILED = agent_pb2.ComponentStatus.FAILED
ABSENT = agent_pb2.ComponentStatus.ABSENT
ECHO_PORT = 7000
SERVER_TUNNEL = "10.77.0.1"
MB = 1 << 20


def keypair() -> tuple[str, str]:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


class Client:
    def __init__(self, site: "Site", label: str, index: int) -> None:
        self.site = site
        self.label = label
        self.peer_id = f"peer-{label}"
        self.ns = site.lab.netns(f"cli{label}")
        self.iface = site.lab.iface_name(f"wg{label}")
        self.private, self.public = keypair()
        self.tunnel_ip = f"10.77.0.{index + 1}"
        self.veth_ip = f"198.18.0.{4 * (index - 1) + 2}"
        server_veth = f"198.18.0.{4 * (index - 1) + 1}"
        site.lab.veth(site.srv, f"to{label}", f"{server_veth}/30", self.ns, "up0", f"{self.veth_ip}/30")
        self.endpoint = f"{server_veth}:{site.port}"
        self.psk = base64.b64encode(os.urandom(32)).decode() if label == "a" else ""
        self.up = False

    def peer(self, keepalive: int = 0) -> agent_pb2.WireGuardPeer:
        return agent_pb2.WireGuardPeer(
            public_key=self.public,
            preshared_key=self.psk,
            allowed_ips=[f"{self.tunnel_ip}/32"],
            persistent_keepalive=keepalive,
            peer_id=self.peer_id,
        )

    def connect(self) -> None:
        """Bring the client's tunnel up (the "client config" the controller would hand out)."""
        lab = self.site.lab
        lab.wireguard_go(self.ns, self.iface)
        self._set_peer()
        lab.ip(self.ns, "addr", "add", f"{self.tunnel_ip}/24", "dev", self.iface)
        lab.ip(self.ns, "link", "set", self.iface, "up")
        self.up = True

    def _set_peer(self) -> None:
        keys = self.site.lab.workdir
        (keys / f"{self.label}.key").write_text(self.private + "\n")
        (keys / f"{self.label}.psk").write_text((self.psk or "") + "\n")
        argv = ["wg", "set", self.iface, "private-key", str(keys / f"{self.label}.key"), "peer", self.site.public,
                "endpoint", self.endpoint, "allowed-ips", f"{SERVER_TUNNEL}/32"]
        if self.psk:
            argv += ["preshared-key", str(keys / f"{self.label}.psk")]
        run(argv)

    def rehandshake(self) -> None:
        """Forget the session (as a client would after its own timeout) so the next packet handshakes."""
        run(["wg", "set", self.iface, "peer", self.site.public, "remove"])
        self._set_peer()

    def probe(self, size: int = 64, timeout: float = 3.0) -> dict:
        return self.site.lab.probe(self.ns, SERVER_TUNNEL, ECHO_PORT, size, timeout)


class Site:
    def __init__(self, lab: Lab, tmp_path: Path) -> None:
        self.lab = lab
        self.tmp_path = tmp_path
        self.srv = lab.netns("srv")
        self.iface = lab.iface_name("wgs")
        self.port = random.randint(20000, 60000)
        self.private, self.public = keypair()
        self.state_dir = tmp_path / "agent-state"
        self.clients = {label: Client(self, label, i + 1) for i, label in enumerate(("a", "b", "c"))}
        self.echo = lab.python(self.srv, "echo", str(ECHO_PORT), stdout=subprocess.PIPE)
        assert self.echo.stdout.readline().strip() == b"ready"

    def agent(self) -> AgentHarness:
        return AgentHarness(self.lab, self.srv, self.state_dir)

    def interface(self, peers: str = "ab", name: str | None = None, port: int | None = None,
                  keepalive: int = 0, **extra) -> agent_pb2.WireGuardInterface:
        return agent_pb2.WireGuardInterface(
            name=name or self.iface,
            private_key=self.private,
            listen_port=port or self.port,
            addresses=[f"{SERVER_TUNNEL}/24"],
            peers=[self.clients[p].peer(keepalive) for p in peers],
            **extra,
        )

    def other_interface(self, name: str, port: int) -> agent_pb2.WireGuardInterface:
        """A second, peerless interface of the server."""
        return agent_pb2.WireGuardInterface(
            name=name, private_key=keypair()[0], listen_port=port, addresses=["10.78.0.1/24"]
        )

    def state(self, revision: int, *interfaces: agent_pb2.WireGuardInterface) -> agent_pb2.DesiredState:
        return agent_pb2.DesiredState(
            revision=revision, wireguard=agent_pb2.WireGuardConfig(interfaces=list(interfaces))
        )

    # -- looking at the server side --------------------------------------------------------------------

    def dump(self, iface: str | None = None) -> dict[str, dict]:
        """`wg show dump` of the server interface: peers by public key."""
        out = run(["wg", "show", iface or self.iface, "dump"]).stdout.splitlines()
        peers = {}
        for line in out[1:]:
            public, psk, endpoint, allowed, handshake, rx, tx, keepalive = line.split("\t")
            peers[public] = {"psk": psk, "endpoint": endpoint, "allowed": allowed, "handshake": int(handshake),
                             "rx": int(rx), "tx": int(tx)}
        return peers

    def link(self, iface: str | None = None) -> dict | None:
        data = self.lab.ip_json(self.srv, "-d", "link", "show")
        return next((item for item in data if item["ifname"] == (iface or self.iface)), None)

    def addresses(self, iface: str | None = None) -> list[str]:
        data = self.lab.ip_json(self.srv, "addr", "show", "dev", iface or self.iface)
        return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a.get("scope") == "global"]


def status(report: agent_pb2.AppliedReport) -> agent_pb2.ComponentStatus:
    return next(c for c in report.components if c.name == "wireguard")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def site(lab, tmp_path) -> Site:
    return Site(lab, tmp_path)


def test_tunnel_up_and_peer_traffic_reported_for_the_right_peer(site):
    agent = site.agent()
    assert agent.startup_report is None
    report = agent.apply(site.state(1, site.interface("ab")))
    assert status(report).state == OK, status(report).error
    record = agent.records()[site.iface]
    assert record["backend"] == "userspace" and pid_alive(record["pid"])
    link = site.link()
    assert "UP" in link["flags"] and link["mtu"] == 1420
    assert site.addresses() == [f"{SERVER_TUNNEL}/24"]
    assert set(site.dump()) == {site.clients["a"].public, site.clients["b"].public}

    a = site.clients["a"]
    a.connect()
    assert a.probe()["ok"]  # "ping"
    result = a.probe(4 * MB, timeout=15)
    assert result["ok"], result

    peers = {p["peer_id"]: p for p in agent.traffic()}
    assert set(peers) == {"peer-a"}  # b moved nothing and never shook hands
    entry = peers["peer-a"]
    assert entry["interface"] == site.iface and entry["public_key"] == a.public
    assert int(entry["rx_bytes"]) >= 4 * MB and int(entry["tx_bytes"]) >= 4 * MB
    assert int(entry["last_handshake_ms"]) > 0
    # Deltas: what was reported is not reported again.
    again = [p for p in agent.traffic() if int(p.get("rx_bytes", 0)) + int(p.get("tx_bytes", 0)) > 64 * 1024]
    assert again == []
    lines = [line for line in agent.logs() if line["source"] == "wireguard"]
    messages = " | ".join(line["message"] for line in lines)
    assert "peer peer-a added" in messages and "peer peer-b added" in messages
    assert "peer peer-a: handshake" in messages and "session up" in messages
    agent.stop()


def test_removing_a_peer_leaves_the_others_sessions_alone(site):
    agent = site.agent()
    assert status(agent.apply(site.state(1, site.interface("ab")))).state == OK
    a, b = site.clients["a"], site.clients["b"]
    a.connect()
    b.connect()
    assert a.probe()["ok"] and b.probe()["ok"]
    before = site.dump()
    ifindex, pid = site.link()["ifindex"], agent.records()[site.iface]["pid"]
    assert before[a.public]["handshake"] > 0 and before[b.public]["handshake"] > 0

    report = agent.apply(site.state(2, site.interface("a")))
    assert status(report).state == OK, status(report).error
    after = site.dump()
    assert set(after) == {a.public}
    assert after[a.public]["handshake"] == before[a.public]["handshake"]  # no new handshake needed
    assert site.link()["ifindex"] == ifindex and agent.records()[site.iface]["pid"] == pid
    assert a.probe(256 * 1024)["ok"]
    assert not b.probe(timeout=1.5)["ok"]
    assert site.dump()[a.public]["handshake"] == before[a.public]["handshake"]

    # Adding a peer is just as quiet for the others.
    c = site.clients["c"]
    assert status(agent.apply(site.state(3, site.interface("ac")))).state == OK
    c.connect()
    assert c.probe()["ok"] and a.probe()["ok"]
    assert site.dump()[a.public]["handshake"] == before[a.public]["handshake"]
    assert site.link()["ifindex"] == ifindex and agent.records()[site.iface]["pid"] == pid
    messages = " | ".join(line["message"] for line in agent.logs())
    assert "peer peer-b removed" in messages and "peer peer-c added" in messages
    agent.stop()


def test_bad_config_fails_and_keeps_the_previous_one(site, lab):
    agent = site.agent()
    assert status(agent.apply(site.state(1, site.interface("ab")))).state == OK
    a = site.clients["a"]
    a.connect()
    assert a.probe()["ok"]
    before = site.dump()
    pid = agent.records()[site.iface]["pid"]

    # A bad key: refused before anything is touched.
    bad = site.interface("ab")
    bad.peers[1].public_key = "not-a-key"
    report = agent.apply(site.state(2, bad))
    assert status(report).state == FAILED and "public_key" in status(report).error
    assert report.revision == 1

    # Two interfaces on one port.
    other = lab.iface_name("wgx")
    report = agent.apply(site.state(3, site.interface("ab"), site.other_interface(other, site.port)))
    assert status(report).state == FAILED and "listen port" in status(report).error
    assert not (Path("/var/run/wireguard") / f"{other}.sock").exists()

    # Failing midway: the first interface's peers are changed, then a second one cannot get its port.
    busy = random.randint(20000, 60000)
    while busy == site.port:
        busy = random.randint(20000, 60000)
    holder = lab.python(site.srv, "hold-udp", str(busy), stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"ready"
    report = agent.apply(site.state(4, site.interface("ac"), site.other_interface(other, busy)))
    assert status(report).state == FAILED and "in use" in status(report).error, status(report).error
    after = site.dump()
    assert set(after) == set(before)  # b is back, c is gone
    for public, peer in before.items():
        assert (after[public]["allowed"], after[public]["psk"]) == (peer["allowed"], peer["psk"])
    assert after[a.public]["handshake"] == before[a.public]["handshake"]
    assert site.link(other) is None and other not in agent.records()
    assert agent.records()[site.iface]["pid"] == pid
    assert a.probe()["ok"]
    messages = " | ".join(line["message"] for line in agent.logs())
    assert "rolled back" in messages

    # A name taken by a link that is not ours.
    report = agent.apply(site.state(5, site.interface("ab"), site.other_interface("toa", busy + 1)))
    assert status(report).state == FAILED and "not a WireGuard interface" in status(report).error
    assert "UP" in site.link("toa")["flags"]

    # And a good config still goes through afterwards.
    report = agent.apply(site.state(6, site.interface("abc")))
    assert status(report).state == OK and report.revision == 6
    assert len(site.dump()) == 3
    agent.stop()


def test_key_port_address_and_mtu_change_in_place(site):
    agent = site.agent()
    assert status(agent.apply(site.state(1, site.interface("ab")))).state == OK
    pid, ifindex = agent.records()[site.iface]["pid"], site.link()["ifindex"]
    private, public = keypair()
    changed = site.interface("ab", port=site.port + 1, mtu=1380)
    changed.private_key = private
    changed.addresses[:] = [f"{SERVER_TUNNEL}/24", "10.79.0.1/16", "fd00:77::1/64"]
    report = agent.apply(site.state(2, changed))
    assert status(report).state == OK, status(report).error
    assert agent.records()[site.iface]["pid"] == pid and site.link()["ifindex"] == ifindex
    assert run(["wg", "show", site.iface, "public-key"]).stdout.strip() == public
    assert run(["wg", "show", site.iface, "listen-port"]).stdout.strip() == str(site.port + 1)
    assert sorted(site.addresses()) == sorted(["10.77.0.1/24", "10.79.0.1/16", "fd00:77::1/64"])
    assert site.link()["mtu"] == 1380 and len(site.dump()) == 2
    changed.addresses[:] = ["10.79.0.1/16"]
    assert status(agent.apply(site.state(3, changed))).state == OK
    assert site.addresses() == ["10.79.0.1/16"] and agent.records()[site.iface]["pid"] == pid
    agent.stop()


def test_agent_restart_adopts_the_running_interface(site):
    agent = site.agent()
    assert status(agent.apply(site.state(1, site.interface("ab")))).state == OK
    a = site.clients["a"]
    a.connect()
    assert a.probe(MB, timeout=10)["ok"]
    assert any(p["peer_id"] == "peer-a" for p in agent.traffic())
    pid, ifindex = agent.records()[site.iface]["pid"], site.link()["ifindex"]
    handshake = site.dump()[a.public]["handshake"]

    agent.stop()  # SIGTERM: the agent goes, the tunnel stays
    assert pid_alive(pid)
    assert a.probe(MB, timeout=10)["ok"]  # served with no agent at all

    agent = site.agent()
    assert status(agent.startup_report).state == OK, status(agent.startup_report).error
    assert agent.records()[site.iface]["pid"] == pid and site.link()["ifindex"] == ifindex
    assert site.dump()[a.public]["handshake"] == handshake
    assert a.probe()["ok"]
    assert "adopted the running interface" in " | ".join(line["message"] for line in agent.logs())
    # The MB sent while no agent ran is reported once, the one reported before the restart not again.
    entry = next(p for p in agent.traffic() if p["peer_id"] == "peer-a")
    assert MB <= int(entry["rx_bytes"]) < 2 * MB

    # A changed config after the restart: only the difference is applied.
    assert status(agent.apply(site.state(2, site.interface("abc")))).state == OK
    assert agent.records()[site.iface]["pid"] == pid and len(site.dump()) == 3
    assert site.dump()[a.public]["handshake"] == handshake
    agent.stop()

    # Even with its tracking file lost, the agent finds the running wireguard-go instead of failing.
    (site.state_dir / "wireguard" / "interfaces.json").unlink()
    agent = site.agent()
    assert status(agent.startup_report).state == OK, status(agent.startup_report).error
    assert agent.records()[site.iface]["pid"] == pid and site.link()["ifindex"] == ifindex
    assert site.dump()[a.public]["handshake"] == handshake and a.probe()["ok"]
    agent.stop()


def test_interfaces_removed_from_desired_state_are_torn_down(site, lab):
    agent = site.agent()
    second = lab.iface_name("wgt")
    report = agent.apply(site.state(1, site.interface("ab"), site.other_interface(second, site.port + 1)))
    assert status(report).state == OK, status(report).error
    pids = {name: rec["pid"] for name, rec in agent.records().items()}
    assert set(pids) == {site.iface, second}

    assert status(agent.apply(site.state(2, site.interface("ab")))).state == OK
    assert site.link(second) is None and not pid_alive(pids[second])
    assert not (Path("/var/run/wireguard") / f"{second}.sock").exists()
    assert agent.records()[site.iface]["pid"] == pids[site.iface]

    report = agent.apply(agent_pb2.DesiredState(revision=3))
    assert status(report).state == ABSENT
    assert site.link() is None and not pid_alive(pids[site.iface]) and agent.records() == {}
    assert not (Path("/var/run/wireguard") / f"{site.iface}.sock").exists()
    messages = " | ".join(line["message"] for line in agent.logs())
    assert f"{second}: removed" in messages and f"{site.iface}: removed" in messages
    agent.stop()


def test_dead_wireguard_go_is_restarted_with_its_config(site):
    agent = site.agent()
    # With a keepalive the server itself re-handshakes after the restart, at the endpoint it had learned.
    assert status(agent.apply(site.state(1, site.interface("ab", keepalive=1)))).state == OK
    a = site.clients["a"]
    a.connect()
    assert a.probe()["ok"]
    endpoint = site.dump()[a.public]["endpoint"]
    agent.traffic()  # the telemetry read also remembers where peers are
    pid = agent.records()[site.iface]["pid"]

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: agent.records()[site.iface]["pid"] not in (None, pid) and site.link() is not None, 15,
             "wireguard-go restarted")
    new_pid = agent.records()[site.iface]["pid"]
    wait_for(lambda: len(site.dump()) == 2 and site.addresses() == [f"{SERVER_TUNNEL}/24"], 5, "config re-applied")
    assert site.dump()[a.public]["endpoint"] == endpoint
    wait_for(lambda: a.probe(timeout=1)["ok"], 10, "tunnel back without the client doing anything")
    assert agent.records()[site.iface]["pid"] == new_pid
    messages = " | ".join(line["message"] for line in agent.logs())
    assert "is gone; restarting it" in messages and "configuration re-applied" in messages
    agent.stop()


def test_nat_masquerades_out_of_the_default_route_or_fails_clearly(site, lab):
    from agent.wireguard import nat

    lab.ip(site.srv, "route", "add", "default", "via", "198.18.0.2")
    agent = site.agent()
    report = agent.apply(site.state(1, site.interface("a", nat=True)))
    if nat.tool() is None:
        assert status(report).state == FAILED and "neither iptables nor nft" in status(report).error
        assert site.link() is None  # refused before anything was created
        agent.stop()
        return
    assert status(report).state == OK, status(report).error
    assert lab.exec(site.srv, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"

    def ruleset() -> str:
        if nat.tool() == "iptables":
            return lab.exec(site.srv, ["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout
        return lab.exec(site.srv, ["nft", "list", "ruleset"]).stdout

    assert "10.77.0.0/24" in ruleset() and "toa" in ruleset()
    # Re-applying (agent restart) does not add the rule twice.
    agent.stop()
    agent = site.agent()
    assert status(agent.startup_report).state == OK
    assert ruleset().count("10.77.0.0/24") == 1
    assert status(agent.apply(site.state(2, site.interface("a")))).state == OK  # nat off: rule gone
    assert "10.77.0.0/24" not in ruleset()
    assert status(agent.apply(site.state(3, site.interface("a", nat=True)))).state == OK
    assert status(agent.apply(agent_pb2.DesiredState(revision=4))).state == ABSENT  # interface gone: rule gone
    assert "10.77.0.0/24" not in ruleset()
    agent.stop()


def test_the_egress_chain_comes_first_and_goes_with_the_interface(site, lab):
    """FORWARD jumps to the interface's egress chain before anything else (NAT or not); re-applying does not
    add it twice; removing the interface removes the chain and the jump."""
    from agent.wireguard import nat

    if nat.tool() != "iptables":
        pytest.skip("the chain is iptables' form of the policy (nft puts it in the interface's table)")
    agent = site.agent()
    assert status(agent.apply(site.state(1, site.interface("a", nat=True)))).state == OK
    chain = nat.chain_name(site.iface)

    def forward() -> list[str]:
        return lab.exec(site.srv, ["iptables", "-S", "FORWARD"]).stdout.splitlines()

    def chain_rules() -> list[str]:
        done = lab.exec(site.srv, ["iptables", "-S", chain], check=False)
        return done.stdout.splitlines() if done.returncode == 0 else []

    assert forward()[1].startswith(f"-A FORWARD -i {site.iface}") and forward()[1].endswith(f"-j {chain}")
    rules = chain_rules()
    assert f"-A {chain} -d 169.254.0.0/16 -j REJECT --reject-with icmp-port-unreachable" in rules
    assert f"-A {chain} -d 127.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable" in rules
    agent.stop()
    agent = site.agent()  # an agent restart re-applies: still one jump, same chain
    assert status(agent.startup_report).state == OK
    assert sum(line.endswith(f"-j {chain}") for line in forward()) == 1 and chain_rules() == rules
    assert status(agent.apply(agent_pb2.DesiredState(revision=2))).state == ABSENT
    assert not any(chain in line for line in forward()) and chain_rules() == []
    agent.stop()
