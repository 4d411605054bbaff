from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "agent_version")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    agent_version: str
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., agent_version: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("node_id", "certificate_pem", "ca_chain_pem")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    certificate_pem: bytes
    ca_chain_pem: bytes
    def __init__(self, node_id: _Optional[str] = ..., certificate_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_pem", "agent_version")
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    agent_version: str
    def __init__(self, csr_pem: _Optional[bytes] = ..., agent_version: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_chain_pem")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_chain_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_chain_pem: _Optional[bytes] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "applied", "telemetry", "logs", "command_result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    applied: AppliedReport
    telemetry: TelemetryBatch
    logs: LogBatch
    command_result: CommandResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., applied: _Optional[_Union[AppliedReport, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetryBatch, _Mapping]] = ..., logs: _Optional[_Union[LogBatch, _Mapping]] = ..., command_result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("welcome", "desired_state", "telemetry_ack", "command", "shutdown")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    DESIRED_STATE_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    desired_state: DesiredState
    telemetry_ack: TelemetryAck
    command: Command
    shutdown: Shutdown
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., desired_state: _Optional[_Union[DesiredState, _Mapping]] = ..., telemetry_ack: _Optional[_Union[TelemetryAck, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., shutdown: _Optional[_Union[Shutdown, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "agent_version", "capabilities", "boot_id", "applied_revision", "telemetry_seq", "hostname")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_SEQ_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    agent_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    boot_id: str
    applied_revision: int
    telemetry_seq: int
    hostname: str
    def __init__(self, node_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., boot_id: _Optional[str] = ..., applied_revision: _Optional[int] = ..., telemetry_seq: _Optional[int] = ..., hostname: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_epoch", "heartbeat_interval_seconds", "telemetry_acked_seq", "controller_version")
    SESSION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_epoch: int
    heartbeat_interval_seconds: int
    telemetry_acked_seq: int
    controller_version: str
    def __init__(self, session_epoch: _Optional[int] = ..., heartbeat_interval_seconds: _Optional[int] = ..., telemetry_acked_seq: _Optional[int] = ..., controller_version: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at_ms", "applied_revision")
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    sent_at_ms: int
    applied_revision: int
    def __init__(self, sent_at_ms: _Optional[int] = ..., applied_revision: _Optional[int] = ...) -> None: ...

class DesiredState(_message.Message):
    __slots__ = ("revision", "agent", "v2ray", "wireguard")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    V2RAY_FIELD_NUMBER: _ClassVar[int]
    WIREGUARD_FIELD_NUMBER: _ClassVar[int]
    revision: int
    agent: AgentSettings
    v2ray: V2RayConfig
    wireguard: WireGuardConfig
    def __init__(self, revision: _Optional[int] = ..., agent: _Optional[_Union[AgentSettings, _Mapping]] = ..., v2ray: _Optional[_Union[V2RayConfig, _Mapping]] = ..., wireguard: _Optional[_Union[WireGuardConfig, _Mapping]] = ...) -> None: ...

class AgentSettings(_message.Message):
    __slots__ = ("metrics_interval_seconds", "log_level", "allow_private_targets")
    METRICS_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PRIVATE_TARGETS_FIELD_NUMBER: _ClassVar[int]
    metrics_interval_seconds: int
    log_level: str
    allow_private_targets: bool
    def __init__(self, metrics_interval_seconds: _Optional[int] = ..., log_level: _Optional[str] = ..., allow_private_targets: _Optional[bool] = ...) -> None: ...

class EgressPolicy(_message.Message):
    __slots__ = ("blocked_cidrs", "allowed_cidrs", "block_bittorrent")
    BLOCKED_CIDRS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_CIDRS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_BITTORRENT_FIELD_NUMBER: _ClassVar[int]
    blocked_cidrs: _containers.RepeatedScalarFieldContainer[str]
    allowed_cidrs: _containers.RepeatedScalarFieldContainer[str]
    block_bittorrent: bool
    def __init__(self, blocked_cidrs: _Optional[_Iterable[str]] = ..., allowed_cidrs: _Optional[_Iterable[str]] = ..., block_bittorrent: _Optional[bool] = ...) -> None: ...

class V2RayConfig(_message.Message):
    __slots__ = ("inbounds", "users", "log_level", "egress", "access_log", "access_log_addresses", "core")
    INBOUNDS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LOG_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LOG_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELD_NUMBER: _ClassVar[int]
    inbounds: _containers.RepeatedCompositeFieldContainer[V2RayInbound]
    users: _containers.RepeatedCompositeFieldContainer[V2RayUser]
    log_level: str
    egress: EgressPolicy
    access_log: bool
    access_log_addresses: bool
    core: str
    def __init__(self, inbounds: _Optional[_Iterable[_Union[V2RayInbound, _Mapping]]] = ..., users: _Optional[_Iterable[_Union[V2RayUser, _Mapping]]] = ..., log_level: _Optional[str] = ..., egress: _Optional[_Union[EgressPolicy, _Mapping]] = ..., access_log: _Optional[bool] = ..., access_log_addresses: _Optional[bool] = ..., core: _Optional[str] = ...) -> None: ...

class V2RayInbound(_message.Message):
    __slots__ = ("tag", "protocol", "port", "listen", "profile", "reality", "tls", "ws_path")
    TAG_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    REALITY_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    WS_PATH_FIELD_NUMBER: _ClassVar[int]
    tag: str
    protocol: str
    port: int
    listen: str
    profile: str
    reality: RealitySettings
    tls: TlsSettings
    ws_path: str
    def __init__(self, tag: _Optional[str] = ..., protocol: _Optional[str] = ..., port: _Optional[int] = ..., listen: _Optional[str] = ..., profile: _Optional[str] = ..., reality: _Optional[_Union[RealitySettings, _Mapping]] = ..., tls: _Optional[_Union[TlsSettings, _Mapping]] = ..., ws_path: _Optional[str] = ...) -> None: ...

class RealitySettings(_message.Message):
    __slots__ = ("private_key", "short_ids", "dest", "server_names")
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    SHORT_IDS_FIELD_NUMBER: _ClassVar[int]
    DEST_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAMES_FIELD_NUMBER: _ClassVar[int]
    private_key: str
    short_ids: _containers.RepeatedScalarFieldContainer[str]
    dest: str
    server_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, private_key: _Optional[str] = ..., short_ids: _Optional[_Iterable[str]] = ..., dest: _Optional[str] = ..., server_names: _Optional[_Iterable[str]] = ...) -> None: ...

class TlsSettings(_message.Message):
    __slots__ = ("certificate_file", "key_file", "server_name")
    CERTIFICATE_FILE_FIELD_NUMBER: _ClassVar[int]
    KEY_FILE_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    certificate_file: str
    key_file: str
    server_name: str
    def __init__(self, certificate_file: _Optional[str] = ..., key_file: _Optional[str] = ..., server_name: _Optional[str] = ...) -> None: ...

class V2RayUser(_message.Message):
    __slots__ = ("email", "uuid")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    email: str
    uuid: str
    def __init__(self, email: _Optional[str] = ..., uuid: _Optional[str] = ...) -> None: ...

class WireGuardConfig(_message.Message):
    __slots__ = ("interfaces", "egress")
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    interfaces: _containers.RepeatedCompositeFieldContainer[WireGuardInterface]
    egress: EgressPolicy
    def __init__(self, interfaces: _Optional[_Iterable[_Union[WireGuardInterface, _Mapping]]] = ..., egress: _Optional[_Union[EgressPolicy, _Mapping]] = ...) -> None: ...

class WireGuardInterface(_message.Message):
    __slots__ = ("name", "private_key", "listen_port", "addresses", "mtu", "nat", "peers", "peer_to_peer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    NAT_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PEER_TO_PEER_FIELD_NUMBER: _ClassVar[int]
    name: str
    private_key: str
    listen_port: int
    addresses: _containers.RepeatedScalarFieldContainer[str]
    mtu: int
    nat: bool
    peers: _containers.RepeatedCompositeFieldContainer[WireGuardPeer]
    peer_to_peer: bool
    def __init__(self, name: _Optional[str] = ..., private_key: _Optional[str] = ..., listen_port: _Optional[int] = ..., addresses: _Optional[_Iterable[str]] = ..., mtu: _Optional[int] = ..., nat: _Optional[bool] = ..., peers: _Optional[_Iterable[_Union[WireGuardPeer, _Mapping]]] = ..., peer_to_peer: _Optional[bool] = ...) -> None: ...

class WireGuardPeer(_message.Message):
    __slots__ = ("public_key", "preshared_key", "allowed_ips", "persistent_keepalive", "peer_id")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRESHARED_KEY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IPS_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_KEEPALIVE_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    preshared_key: str
    allowed_ips: _containers.RepeatedScalarFieldContainer[str]
    persistent_keepalive: int
    peer_id: str
    def __init__(self, public_key: _Optional[str] = ..., preshared_key: _Optional[str] = ..., allowed_ips: _Optional[_Iterable[str]] = ..., persistent_keepalive: _Optional[int] = ..., peer_id: _Optional[str] = ...) -> None: ...

class AppliedReport(_message.Message):
    __slots__ = ("revision", "attempted_revision", "components")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    attempted_revision: int
    components: _containers.RepeatedCompositeFieldContainer[ComponentStatus]
    def __init__(self, revision: _Optional[int] = ..., attempted_revision: _Optional[int] = ..., components: _Optional[_Iterable[_Union[ComponentStatus, _Mapping]]] = ...) -> None: ...

class ComponentStatus(_message.Message):
    __slots__ = ("name", "state", "error", "config_hash")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[ComponentStatus.State]
        OK: _ClassVar[ComponentStatus.State]
        FAILED: _ClassVar[ComponentStatus.State]
        ABSENT: _ClassVar[ComponentStatus.State]
    STATE_UNSPECIFIED: ComponentStatus.State
    OK: ComponentStatus.State
    FAILED: ComponentStatus.State
    ABSENT: ComponentStatus.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: ComponentStatus.State
    error: str
    config_hash: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[ComponentStatus.State, str]] = ..., error: _Optional[str] = ..., config_hash: _Optional[str] = ...) -> None: ...

class TelemetryBatch(_message.Message):
    __slots__ = ("seq", "metrics", "dropped_samples", "wireguard_peers", "v2ray_users")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WIREGUARD_PEERS_FIELD_NUMBER: _ClassVar[int]
    V2RAY_USERS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSample]
    dropped_samples: int
    wireguard_peers: _containers.RepeatedCompositeFieldContainer[PeerTraffic]
    v2ray_users: _containers.RepeatedCompositeFieldContainer[UserTraffic]
    def __init__(self, seq: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricSample, _Mapping]]] = ..., dropped_samples: _Optional[int] = ..., wireguard_peers: _Optional[_Iterable[_Union[PeerTraffic, _Mapping]]] = ..., v2ray_users: _Optional[_Iterable[_Union[UserTraffic, _Mapping]]] = ...) -> None: ...

class UserTraffic(_message.Message):
    __slots__ = ("email", "uplink_bytes", "downlink_bytes")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    UPLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    email: str
    uplink_bytes: int
    downlink_bytes: int
    def __init__(self, email: _Optional[str] = ..., uplink_bytes: _Optional[int] = ..., downlink_bytes: _Optional[int] = ...) -> None: ...

class PeerTraffic(_message.Message):
    __slots__ = ("interface", "public_key", "peer_id", "rx_bytes", "tx_bytes", "last_handshake_ms")
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_HANDSHAKE_MS_FIELD_NUMBER: _ClassVar[int]
    interface: str
    public_key: str
    peer_id: str
    rx_bytes: int
    tx_bytes: int
    last_handshake_ms: int
    def __init__(self, interface: _Optional[str] = ..., public_key: _Optional[str] = ..., peer_id: _Optional[str] = ..., rx_bytes: _Optional[int] = ..., tx_bytes: _Optional[int] = ..., last_handshake_ms: _Optional[int] = ...) -> None: ...

class MetricSample(_message.Message):
    __slots__ = ("ts_ms", "cpu_percent", "mem_total", "mem_used", "swap_total", "swap_used", "disk_total", "disk_used", "net_rx_bytes", "net_tx_bytes", "load1", "load5", "load15", "uptime_seconds")
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SWAP_USED_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_FIELD_NUMBER: _ClassVar[int]
    NET_RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    NET_TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ts_ms: int
    cpu_percent: float
    mem_total: int
    mem_used: int
    swap_total: int
    swap_used: int
    disk_total: int
    disk_used: int
    net_rx_bytes: int
    net_tx_bytes: int
    load1: float
    load5: float
    load15: float
    uptime_seconds: int
    def __init__(self, ts_ms: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., mem_total: _Optional[int] = ..., mem_used: _Optional[int] = ..., swap_total: _Optional[int] = ..., swap_used: _Optional[int] = ..., disk_total: _Optional[int] = ..., disk_used: _Optional[int] = ..., net_rx_bytes: _Optional[int] = ..., net_tx_bytes: _Optional[int] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., uptime_seconds: _Optional[int] = ...) -> None: ...

class TelemetryAck(_message.Message):
    __slots__ = ("acked_seq",)
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    def __init__(self, acked_seq: _Optional[int] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("lines", "dropped")
    LINES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    dropped: int
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., dropped: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("ts_ms", "level", "source", "message")
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ts_ms: int
    level: str
    source: str
    message: str
    def __init__(self, ts_ms: _Optional[int] = ..., level: _Optional[str] = ..., source: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("id", "timeout_ms", "tcping", "info")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TCPING_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_ms: int
    tcping: TcpingRequest
    info: InfoRequest
    def __init__(self, id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., tcping: _Optional[_Union[TcpingRequest, _Mapping]] = ..., info: _Optional[_Union[InfoRequest, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("id", "error", "tcping", "info")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TCPING_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    id: str
    error: str
    tcping: TcpingResult
    info: NodeInfo
    def __init__(self, id: _Optional[str] = ..., error: _Optional[str] = ..., tcping: _Optional[_Union[TcpingResult, _Mapping]] = ..., info: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class TcpingRequest(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: str
    def __init__(self, target: _Optional[str] = ...) -> None: ...

class TcpingResult(_message.Message):
    __slots__ = ("target", "connected", "latency_ms", "error")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    target: str
    connected: bool
    latency_ms: int
    error: str
    def __init__(self, target: _Optional[str] = ..., connected: _Optional[bool] = ..., latency_ms: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("alias", "os", "arch", "cpu", "mem_total", "mem_used", "swap_total", "swap_used", "netrx", "nettx", "diskr", "diskw", "sysup", "ver", "name", "uptime", "log", "tls", "crt", "key")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEM_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_FIELD_NUMBER: _ClassVar[int]
    SWAP_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SWAP_USED_FIELD_NUMBER: _ClassVar[int]
    NETRX_FIELD_NUMBER: _ClassVar[int]
    NETTX_FIELD_NUMBER: _ClassVar[int]
    DISKR_FIELD_NUMBER: _ClassVar[int]
    DISKW_FIELD_NUMBER: _ClassVar[int]
    SYSUP_FIELD_NUMBER: _ClassVar[int]
    VER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CRT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    alias: str
    os: str
    arch: str
    cpu: int
    mem_total: int
    mem_used: int
    swap_total: int
    swap_used: int
    netrx: int
    nettx: int
    diskr: int
    diskw: int
    sysup: int
    ver: str
    name: str
    uptime: int
    log: str
    tls: str
    crt: str
    key: str
    def __init__(self, alias: _Optional[str] = ..., os: _Optional[str] = ..., arch: _Optional[str] = ..., cpu: _Optional[int] = ..., mem_total: _Optional[int] = ..., mem_used: _Optional[int] = ..., swap_total: _Optional[int] = ..., swap_used: _Optional[int] = ..., netrx: _Optional[int] = ..., nettx: _Optional[int] = ..., diskr: _Optional[int] = ..., diskw: _Optional[int] = ..., sysup: _Optional[int] = ..., ver: _Optional[str] = ..., name: _Optional[str] = ..., uptime: _Optional[int] = ..., log: _Optional[str] = ..., tls: _Optional[str] = ..., crt: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class Shutdown(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
