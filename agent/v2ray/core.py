"""The proxy cores the V2Ray driver can run, as data: V2Ray 4.x and Xray-core.

Both read the same JSON configuration (agent.v2ray.config) and serve the same gRPC API with the same message
layouts (protos/v2ray_handler.proto, protos/v2ray_stats.proto); what differs is listed here and nowhere else:

    binary        $VPNFLEET_V2RAY (default `v2ray`), $VPNFLEET_XRAY (default `xray`)
    command line  `v2ray -config F` / `v2ray -test -config F`; `xray run -config F` / `xray run -test -config F`
    gRPC services v2ray.core.app.proxyman.command.HandlerService, v2ray.core.app.stats.command.StatsService;
                  xray.app.proxyman.command.HandlerService, xray.app.stats.command.StatsService
    type names    the full protobuf names V2Ray/Xray decode a TypedMessage by (v2ray.core.proxy.vmess.Account,
                  xray.proxy.vmess.Account, ...): the wire format is the same, only these strings differ
    profiles      the transport profiles the core serves (REALITY is Xray's alone; V2Ray 4.34 even accepts
                  `"security": "reality"` in -test and then serves plain TCP, so the agent refuses it itself)

The driver keeps one code path: everything core-specific comes from a Core. Pure data, no I/O but binary().
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

#: The transport profiles (agent.v2ray.spec), by the cores that serve them.
COMMON_PROFILES = frozenset({"vmess", "vmess-ws-tls", "vless-ws-tls"})
XRAY_ONLY_PROFILES = frozenset({"vless-reality-vision"})


@dataclasses.dataclass(frozen=True)
class Core:
    """One proxy core: how to find and run it, and the names its API answers to."""

    #: What V2RayConfig.core says and what the agent's capabilities list: "v2ray" | "xray".
    name: str
    #: How messages and live log lines name it.
    title: str
    binary_env: str
    default_binary: str
    #: Arguments between the binary and `-config PATH` (Xray: the `run` subcommand, its documented form).
    subcommand: tuple[str, ...]
    handler_service: str
    stats_service: str
    add_user_type: str
    remove_user_type: str
    #: protocol -> the full name of its Account message.
    account_types: Mapping[str, str]
    profiles: frozenset[str]

    def binary(self, override: str | None = None) -> str:
        """The binary to run: override, else $<binary_env>, else the default name (looked up on PATH)."""
        return override or os.environ.get(self.binary_env) or self.default_binary

    def run_argv(self, binary: str, config: str) -> list[str]:
        """The command line that runs the core on config (agent.v2ray.process.runs_config() recognises it)."""
        return [binary, *self.subcommand, "-config", config]

    def test_argv(self, binary: str, config: str) -> list[str]:
        """The command line that only checks config (exit status 0: accepted)."""
        return [binary, *self.subcommand, "-test", "-config", config]

    def method(self, service: str, name: str) -> str:
        """The gRPC method path, e.g. "/xray.app.stats.command.StatsService/QueryStats"."""
        return f"/{service}/{name}"


V2RAY = Core(
    name="v2ray",
    title="V2Ray",
    binary_env="VPNFLEET_V2RAY",
    default_binary="v2ray",
    subcommand=(),  # V2Ray 4.x has no subcommands: `v2ray -config F`
    handler_service="v2ray.core.app.proxyman.command.HandlerService",
    stats_service="v2ray.core.app.stats.command.StatsService",
    add_user_type="v2ray.core.app.proxyman.command.AddUserOperation",
    remove_user_type="v2ray.core.app.proxyman.command.RemoveUserOperation",
    account_types={"vmess": "v2ray.core.proxy.vmess.Account", "vless": "v2ray.core.proxy.vless.Account"},
    profiles=COMMON_PROFILES,
)

XRAY = Core(
    name="xray",
    title="Xray",
    binary_env="VPNFLEET_XRAY",
    default_binary="xray",
    subcommand=("run",),
    handler_service="xray.app.proxyman.command.HandlerService",
    stats_service="xray.app.stats.command.StatsService",
    add_user_type="xray.app.proxyman.command.AddUserOperation",
    remove_user_type="xray.app.proxyman.command.RemoveUserOperation",
    account_types={"vmess": "xray.proxy.vmess.Account", "vless": "xray.proxy.vless.Account"},
    profiles=COMMON_PROFILES | XRAY_ONLY_PROFILES,
)

#: Every core, in the order capabilities list them.
CORES: dict[str, Core] = {core.name: core for core in (V2RAY, XRAY)}
#: What an empty V2RayConfig.core means (controllers from before cores, and configs on disk from then).
DEFAULT_CORE = V2RAY


def core_named(name: str) -> Core:
    """The core called name ("" is the default, V2Ray). Raises ValueError naming an unknown one."""
    key = name.strip().lower()
    if not key:
        return DEFAULT_CORE
    try:
        return CORES[key]
    except KeyError:
        raise ValueError(f"core {name!r} is not supported (use {' or '.join(CORES)}, or \"\" for v2ray)") from None
