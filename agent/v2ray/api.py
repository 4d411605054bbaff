"""gRPC client of a running V2Ray's or Xray's API inbound (127.0.0.1:<api port>, plain text: loopback only).

    async with V2RayApi(port, core=XRAY) as api:                          # core: agent.v2ray.core (V2RAY default)
        await api.add_user("vmess-in", "vmess", "subscriber-1", uuid)     # True: added, False: was there
        await api.add_user("vless-in", "vless", "subscriber-1", uuid, flow="xtls-rprx-vision")
        await api.remove_user("vmess-in", "subscriber-1")                  # True: removed, False: was not there
        counters = await api.query_stats("user>>>", reset=True)

Both cores take the same messages (protos/v2ray_*.proto) under different service and type names, so the
methods are called through generic stubs (`channel.unary_unary("/<service>/<method>")`) whose paths, like
the TypedMessage type names, come from the Core. Both report every failure as StatusCode.UNKNOWN with a text.
"User X already exists." on add and "User X not found." on remove mean the wanted state already holds, so
they are successes here (that is what makes applies and drift repair idempotent); anything else, e.g.
"handler not found" for an unknown inbound tag, raises ApiError. Error texts can echo a credential
("invalid UUID: ..."), so they are redacted.
"""

from __future__ import annotations

import re

import grpc

from agent.v2ray.core import V2RAY, Core
from agent.v2ray.spec import redact_uuids
from protos import v2ray_handler_pb2 as handler
from protos import v2ray_stats_pb2 as stats

CALL_TIMEOUT_SECONDS = 10.0
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),  # loopback: never through a proxy from the agent's environment
    # A V2Ray that is just starting refuses the first connection; retry soon rather than after gRPC's 1 s+.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_ALREADY_EXISTS = re.compile(r"\bUser .* already exists\.")
_NOT_FOUND = re.compile(r"\bUser .* not found\.")


class ApiError(RuntimeError):
    """A V2Ray/Xray API call failed (the core said no, or could not be reached)."""


def _typed(type_name: str, message) -> handler.TypedMessage:
    return handler.TypedMessage(type=type_name, value=message.SerializeToString())


def _account(core: Core, protocol: str, user_uuid: str, flow: str) -> handler.TypedMessage:
    # Xray's VMess Account has no field 2 (alter_id); 0 is not on the wire in proto3, so one message serves both.
    if protocol == "vmess":
        return _typed(core.account_types["vmess"], handler.VmessAccount(id=user_uuid, alter_id=0))
    if protocol == "vless":
        return _typed(core.account_types["vless"], handler.VlessAccount(id=user_uuid, flow=flow))
    raise ValueError(f"unsupported protocol {protocol!r}")


def _details(exc: grpc.aio.AioRpcError) -> str:
    return redact_uuids(exc.details() or exc.code().name)


class V2RayApi:
    """One channel to a core's API; use as an async context manager (the channel belongs to the running loop)."""

    def __init__(self, port: int, timeout: float = CALL_TIMEOUT_SECONDS, core: Core = V2RAY) -> None:
        self.target = f"127.0.0.1:{port}"
        self.timeout = timeout
        self.core = core
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> V2RayApi:
        channel = self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        core = self.core

        def stub(service: str, method: str, request, response):
            return channel.unary_unary(core.method(service, method), request_serializer=request.SerializeToString,
                                       response_deserializer=response.FromString)

        self._alter_inbound = stub(core.handler_service, "AlterInbound", handler.AlterInboundRequest,
                                   handler.AlterInboundResponse)
        self._query_stats = stub(core.stats_service, "QueryStats", stats.QueryStatsRequest, stats.QueryStatsResponse)
        self._sys_stats = stub(core.stats_service, "GetSysStats", stats.SysStatsRequest, stats.SysStatsResponse)
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def alive(self, timeout: float = 1.0) -> bool:
        """Does the API answer (GetSysStats)?"""
        try:
            await self._sys_stats(stats.SysStatsRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def add_user(self, tag: str, protocol: str, email: str, user_uuid: str, flow: str = "") -> bool:
        """Add a user to inbound `tag`. True if it was added, False if a user with that email was there.
        flow: the VLESS flow its clients use ("xtls-rprx-vision" on REALITY Vision inbounds, else "")."""
        user = handler.User(level=0, email=email, account=_account(self.core, protocol, user_uuid, flow))
        operation = _typed(self.core.add_user_type, handler.AddUserOperation(user=user))
        try:
            await self._alter(tag, operation)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNKNOWN and _ALREADY_EXISTS.search(exc.details() or ""):
                return False
            raise ApiError(f"adding user {email!r} to inbound {tag!r}: {_details(exc)}") from None
        return True

    async def remove_user(self, tag: str, email: str) -> bool:
        """Remove a user from inbound `tag`. True if it was removed, False if there was no such user."""
        operation = _typed(self.core.remove_user_type, handler.RemoveUserOperation(email=email))
        try:
            await self._alter(tag, operation)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNKNOWN and _NOT_FOUND.search(exc.details() or ""):
                return False
            raise ApiError(f"removing user {email!r} from inbound {tag!r}: {_details(exc)}") from None
        return True

    async def _alter(self, tag: str, operation: handler.TypedMessage) -> None:
        request = handler.AlterInboundRequest(tag=tag, operation=operation)
        await self._alter_inbound(request, timeout=self.timeout)

    async def query_stats(self, pattern: str, reset: bool) -> dict[str, int]:
        """Counters whose name contains pattern, {name: value}; reset zeroes each one as it is read."""
        try:
            answer = await self._query_stats(stats.QueryStatsRequest(pattern=pattern, reset=reset),
                                             timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise ApiError(f"reading {self.core.title}'s counters: {_details(exc)}") from None
        return {stat.name: stat.value for stat in answer.stat}
