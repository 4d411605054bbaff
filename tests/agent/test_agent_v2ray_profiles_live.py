"""The transport profiles on the real cores, with real traffic from the internet host (tests/world.py).

REALITY (Xray): a Vision client with the node's public key and a short id downloads byte-exact; one with
another key or short id gets nothing; and an unauthenticated TLS probe of the REALITY port, as a censor
would send, is answered by the target's own certificate (the target is a TLS 1.3 Python server on
127.0.0.1: REALITY needs TLS 1.3 there, which Python's ssl speaks with X25519 key shares).
WebSocket over TLS (V2Ray and Xray): VMess and VLESS clients download byte-exact through a self-signed
certificate (V2Ray clients with allowInsecure, Xray clients pinning it: Xray 26 refuses allowInsecure).
Each core's own -test accepts what the agent renders for every profile it serves, and a key file the
data-plane user cannot read fails the apply naming the file, before anything is started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from agent import dataplane_user
from agent.v2ray import config as v2config
from agent.v2ray.core import CORES
from agent.v2ray.spec import spec_from_proto
from protos import agent_pb2
from tests.agent import test_agent_v2ray_live as live
from tests.agent.test_agent_v2ray_live import MB, Node, new_uuid, wait_until
from tests.v2ray_lab import (ClientTransport, TlsTarget, V2RayClient, can_fetch, fetch, make_certificate,
                             peer_certificate_sha256, reality_keys, v2ray_binary, xray_binary)

make, web, events = live.make, live.web, live.events

pytestmark = pytest.mark.timeout(120)

BINARIES = {"v2ray": v2ray_binary(), "xray": xray_binary()}
needs_xray = pytest.mark.skipif(BINARIES["xray"] is None, reason="needs the xray binary (`make xray`, $VPNFLEET_XRAY)")
TARGET_NAME = "www.example.test"
SHORT_ID = "a1b2c3d4e5f60718"  # the longest short id: 8 bytes
CDN_NAME = "cdn.example.test"


def needs(core: str):
    return pytest.mark.skipif(BINARIES[core] is None, reason=f"needs the {core} binary")


BOTH_CORES = [pytest.param(core, marks=needs(core)) for core in ("v2ray", "xray")]


async def download(protocol: str, port: int, user_uuid: str, url: str, transport: ClientTransport, core: str,
                   timeout: float = 10.0) -> bytes:
    """The body of url through a client of core; raises if it cannot be fetched."""
    with V2RayClient(protocol, "127.0.0.1", port, user_uuid, transport=transport, core=core) as client:
        return await asyncio.to_thread(fetch, client.socks_port, url, timeout)


async def gets_through(protocol: str, port: int, user_uuid: str, url: str, transport: ClientTransport,
                       core: str) -> bool:
    with V2RayClient(protocol, "127.0.0.1", port, user_uuid, transport=transport, core=core) as client:
        return await asyncio.to_thread(can_fetch, client.socks_port, url, live.REFUSED_TIMEOUT)


# -- REALITY -------------------------------------------------------------------------------------------------


@needs_xray
async def test_reality_vision_serves_its_clients_and_shows_probes_the_target(make, web, tmp_path, events):
    private_key, public_key = reality_keys()
    with TlsTarget(make_certificate(tmp_path / "target", TARGET_NAME)) as target:
        node = Node(core="xray")
        port = node.inbound("vr", "vless", profile="vless-reality-vision", reality=agent_pb2.RealitySettings(
            private_key=private_key, short_ids=["", SHORT_ID], dest=target.dest, server_names=[TARGET_NAME]))
        node.users = {"alice": new_uuid()}
        component = make()
        await component.apply(node.part())
        alice = node.users["alice"]
        client = ClientTransport(profile="vless-reality-vision", server_name=TARGET_NAME, public_key=public_key,
                                 short_id=SHORT_ID)

        body = await download("vless", port, alice, web.url(MB), client, "xray")
        assert body == b"x" * MB  # byte-exact through REALITY + Vision
        no_short_id = dataclasses.replace(client, short_id="")  # "" is one of the inbound's short ids
        assert await download("vless", port, alice, web.url(1000), no_short_id, "xray") == b"x" * 1000

        # Anyone without the node's key pair, or with a short id the node does not list, gets nothing.
        _other_private, other_public = reality_keys()
        assert not await gets_through("vless", port, alice, web.url(1000),
                                      dataclasses.replace(client, public_key=other_public), "xray")
        assert not await gets_through("vless", port, alice, web.url(1000),
                                      dataclasses.replace(client, short_id="a1b2c3d4e5f60719"), "xray")

        # A censor's probe (plain TLS, no key) meets the target: its certificate, for any server name.
        before = target.handshakes
        assert peer_certificate_sha256(port, TARGET_NAME) == target.certificate.sha256
        assert peer_certificate_sha256(port, "other.example.test") == target.certificate.sha256
        assert peer_certificate_sha256(target.port, TARGET_NAME) == target.certificate.sha256
        # The node's answers came from the target itself: it completed those handshakes (counted in its threads).
        await wait_until(lambda: target.handshakes >= before + 3, 5, "the target to count the probes' handshakes")
        # The private key never reaches a live log line.
        assert not any(private_key in message for _l, _s, message in events)


# -- WebSocket over TLS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("core", BOTH_CORES)
async def test_ws_tls_carries_vmess_and_vless_byte_exact(make, web, tmp_path, core):
    cert = make_certificate(tmp_path / "tls", CDN_NAME)
    tls = agent_pb2.TlsSettings(certificate_file=cert.certificate_file, key_file=cert.key_file,
                                server_name=CDN_NAME)
    node = Node(core=core)
    vm = node.inbound("vm", "vmess", profile="vmess-ws-tls", tls=tls, ws_path="/ws-1a2b")
    vl = node.inbound("vl", "vless", profile="vless-ws-tls", tls=tls)  # ws_path "": "/"
    node.users = {"alice": new_uuid()}
    component = make()
    await component.apply(node.part())
    alice = node.users["alice"]

    client = ClientTransport(profile="vmess-ws-tls", server_name=CDN_NAME, ws_path="/ws-1a2b",
                             certificate_sha256=cert.sha256)
    assert await download("vmess", vm, alice, web.url(MB), client, core) == b"x" * MB
    vless = dataclasses.replace(client, profile="vless-ws-tls", ws_path="/")
    assert await download("vless", vl, alice, web.url(MB), vless, core) == b"x" * MB
    # The port speaks TLS with the operator's certificate, and only the configured path leads anywhere.
    assert peer_certificate_sha256(vm, CDN_NAME) == cert.sha256
    assert not await gets_through("vmess", vm, alice, web.url(1000), dataclasses.replace(client, ws_path="/x"), core)
    taken = {e.email: e for e in await component.take_traffic(1)}
    assert 2 * MB <= taken["alice"].downlink_bytes < 2 * MB + 2 * live.HEADER_SLACK


@pytest.mark.skipif(os.geteuid() != 0, reason="the data-plane user exists only when the agent is root")
@pytest.mark.skipif(BINARIES["v2ray"] is None, reason="needs the v2ray binary")
async def test_a_key_the_dataplane_user_cannot_read_is_named_before_anything_starts(make, web, tmp_path):
    cert = make_certificate(tmp_path / "tls", CDN_NAME)
    os.chown(cert.key_file, 0, 0)
    os.chmod(cert.key_file, 0o600)  # as an ACME client leaves it: root only
    tls = agent_pb2.TlsSettings(certificate_file=cert.certificate_file, key_file=cert.key_file,
                                server_name=CDN_NAME)
    node = Node()
    vl = node.inbound("vl", "vless", profile="vless-ws-tls", tls=tls)
    node.users = {"alice": new_uuid()}
    component = make()
    with pytest.raises(RuntimeError, match=f"cannot read a file its inbounds name: {cert.key_file}: "
                                           "vpnfleet-dp may not read it") as caught:
        await component.apply(node.part())
    assert not isinstance(caught.value, ValueError)  # fixable: the state applier retries it
    assert component.pid is None and component.starts == 0

    os.chown(cert.key_file, 0, dataplane_user.resolve().gid)  # what the operator guide says to do
    os.chmod(cert.key_file, 0o640)
    await component.apply(node.part())  # the retry
    client = ClientTransport(profile="vless-ws-tls", server_name=CDN_NAME, certificate_sha256=cert.sha256)
    assert await download("vless", vl, node.users["alice"], web.url(1000), client, "v2ray") == b"x" * 1000


# -- each core's own check of what the agent renders -------------------------------------------------------


def profile_parts(tmp_path: Path) -> dict[str, agent_pb2.V2RayInbound]:
    cert = make_certificate(tmp_path / "tls", CDN_NAME)
    tls = agent_pb2.TlsSettings(certificate_file=cert.certificate_file, key_file=cert.key_file,
                                server_name=CDN_NAME)
    private_key, _public = reality_keys()
    return {
        "vmess": agent_pb2.V2RayInbound(tag="a", profile="vmess", port=20001),
        "vless-reality-vision": agent_pb2.V2RayInbound(
            tag="b", profile="vless-reality-vision", port=20002, reality=agent_pb2.RealitySettings(
                private_key=private_key, short_ids=[""], dest="127.0.0.1:20999", server_names=[TARGET_NAME])),
        "vmess-ws-tls": agent_pb2.V2RayInbound(tag="c", profile="vmess-ws-tls", port=20003, tls=tls),
        "vless-ws-tls": agent_pb2.V2RayInbound(tag="d", profile="vless-ws-tls", port=20004, tls=tls,
                                               ws_path="/ws?ed=2048"),
    }


@pytest.mark.parametrize("core", BOTH_CORES)
def test_each_core_accepts_every_profile_it_serves(tmp_path, core):
    inbounds = [item for profile, item in profile_parts(tmp_path).items() if profile in CORES[core].profiles]
    spec = spec_from_proto(agent_pb2.V2RayConfig(inbounds=inbounds, core=core,
                                                 users=[agent_pb2.V2RayUser(email="alice", uuid=new_uuid())]))
    path = tmp_path / "config.json"
    path.write_bytes(v2config.dumps(v2config.render(spec, 20000, str(tmp_path / "a.log"), str(tmp_path / "e.log"))))
    done = subprocess.run(CORES[core].test_argv(BINARIES[core], str(path)), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(spec.inbounds) == (4 if core == "xray" else 3)
