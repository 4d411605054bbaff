"""gRPC limits for the controller's two servers and the agent's channels: message sizes and keepalive rules.

Message sizes are computed from the largest fleet this controller documents (docs/limits.md), not left at
gRPC's defaults (4 MiB received, unlimited sent): a desired state passes 4 MiB near 50,000 subscribers, and
with no explicit bound the agent would refuse a valid state while the controller accepts any size from anyone
holding a certificate. Sizes per entry were measured on the real protobuf (tests/unit/test_grpc_options.py
checks them against rendered messages).
"""

from __future__ import annotations

MIB = 1024 * 1024

# -- the documented maximum fleet ----------------------------------------------------------------------------
#: subscribers allowed on one node (each is a V2Ray user in its desired state)
MAX_SUBSCRIBERS_PER_NODE = 100_000
#: WireGuard peers on one node, over all its interfaces
MAX_WIREGUARD_PEERS_PER_NODE = 10_000

# -- bytes per entry, measured (protobuf wire size, rounded up) ------------------------------------------------
#: V2RayUser: email and id are UUID strings (78 bytes measured)
V2RAY_USER_BYTES = 80
#: WireGuardPeer: public and preshared key, two allowed IPs, keepalive, peer id (about 140 measured)
WIREGUARD_PEER_BYTES = 150
#: everything else in a desired state: inbounds, REALITY/TLS settings, egress CIDR lists, agent settings
DESIRED_STATE_BASE_BYTES = 64 * 1024
#: UserTraffic: subscriber id and two 64-bit counters at their widest (62 bytes)
USER_TRAFFIC_BYTES = 64
#: PeerTraffic: interface, public key, peer id, three 64-bit values at their widest (about 100)
PEER_TRAFFIC_BYTES = 110
#: one LogBatch: the agent sends at most 200 lines (agent/engine.py LOG_BATCH_LINES) of at most 8 KiB each
#: (the controller's telemetry.log_line_max_bytes; longer lines would be cut there anyway)
LOG_BATCH_BYTES = 200 * (8 * 1024 + 64)
#: a bound is doubled (sent) or grown by half (received) so a fleet at its documented maximum is never close
SEND_HEADROOM, RECEIVE_HEADROOM = 2.0, 1.5


def _whole_mib(n: float) -> int:
    return int(-(-n // MIB)) * MIB


def desired_state_bound(subscribers: int = MAX_SUBSCRIBERS_PER_NODE,
                        peers: int = MAX_WIREGUARD_PEERS_PER_NODE) -> int:
    """The largest DesiredState (bytes) for a node with this many subscribers and WireGuard peers."""
    return DESIRED_STATE_BASE_BYTES + subscribers * V2RAY_USER_BYTES + peers * WIREGUARD_PEER_BYTES


def agent_message_bound(subscribers: int = MAX_SUBSCRIBERS_PER_NODE,
                        peers: int = MAX_WIREGUARD_PEERS_PER_NODE) -> int:
    """The largest message an agent sends: a TelemetryBatch in which every user and peer moved bytes, or a
    full LogBatch (heartbeats, reports and command results are far smaller)."""
    telemetry = 4096 + subscribers * USER_TRAFFIC_BYTES + peers * PEER_TRAFFIC_BYTES
    return max(telemetry, LOG_BATCH_BYTES)


#: what the controller sends an agent (a whole DesiredState) and so what an agent must accept: 19 MiB
MAX_SEND_MESSAGE = _whole_mib(SEND_HEADROOM * desired_state_bound())
#: what the controller accepts from an agent on the session stream: 11 MiB
MAX_RECEIVE_MESSAGE = _whole_mib(RECEIVE_HEADROOM * agent_message_bound())
#: the enrollment server sees a token and a CSR (about 1 KiB) and answers with two certificates
ENROLL_MAX_RECEIVE = 64 * 1024
ENROLL_MAX_SEND = 1 * MIB

#: agents ping every 6 min (agent/identity.py channel_options); a peer pinging more often than this without
#: data gets a strike, and after MAX_PING_STRIKES the connection is closed (GOAWAY "too_many_pings")
MIN_CLIENT_PING_INTERVAL_MS = 60_000
MAX_PING_STRIKES = 2

_KEEPALIVE = [
    # the server's own pings find dead agents within 40 s (the hub's liveness works from heartbeats too)
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # enforcement: what clients may do
    ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
    ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
]


def server_options() -> list[tuple[str, int]]:
    """The mTLS session server (Agent.Connect, Renew): one long stream per agent. A connection without any
    call for 5 min (a TLS handshake then nothing) is closed; a connected agent always has its stream open."""
    return [*_KEEPALIVE,
            ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE),
            ("grpc.max_send_message_length", MAX_SEND_MESSAGE),
            ("grpc.max_connection_idle_ms", 300_000),
            # an agent needs its stream and a Renew call; a connection asking for hundreds is not an agent
            ("grpc.max_concurrent_streams", 16)]


def enrollment_server_options() -> list[tuple[str, int]]:
    """The enrollment server (server TLS, anyone may connect): tiny messages, short idle connections."""
    return [*_KEEPALIVE,
            ("grpc.max_receive_message_length", ENROLL_MAX_RECEIVE),
            ("grpc.max_send_message_length", ENROLL_MAX_SEND),
            ("grpc.max_connection_idle_ms", 60_000),
            ("grpc.max_concurrent_streams", 4)]


def channel_options() -> list[tuple[str, int]]:
    """What the agent's channels must carry: it accepts a desired state as large as the controller sends, and
    never sends what the controller would refuse (a clear RESOURCE_EXHAUSTED on the agent, not a reset).
    The agent wheel holds only ``agent`` and ``protos``, so agent/identity.py repeats these two numbers;
    tests/unit/test_grpc_options.py checks they agree."""
    return [("grpc.max_receive_message_length", MAX_SEND_MESSAGE),
            ("grpc.max_send_message_length", MAX_RECEIVE_MESSAGE)]
