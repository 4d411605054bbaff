"""Wiring: build every service once, start the gRPC servers and background loops, expose the Starlette app.

Read top to bottom, ``Controller.__init__`` is the map of the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import datetime as dt
import logging
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import grpc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from controller import __version__
from controller.agent_bundle import AgentBundle, build_agent_wheel
from controller.access import check_routes
from controller.api import http_routes
from controller.auth import Directory, FirstStart, bootstrap_admin
from controller.core_bundle import CoreBundle, load_core_bundle
from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import DomainError
from controller.events import Event, EventBus
from controller.edge.audit import AuditMiddleware
from controller.edge.auth import AuthMiddleware, is_public
from controller.edge.rate_limit import RateLimiter
from controller.edge.errors import (domain_error_handler, http_error_handler, internal_error_handler,
                                    request_validation_handler)
from controller.edge.guards import InputGuardMiddleware
from controller.edge.headers import SecurityHeadersMiddleware
from controller.edge.limits import BodyLimitMiddleware
from controller.edge.request_id import RequestIdMiddleware
from controller.grpc_options import enrollment_server_options, server_options
from controller.hub.hub import Hub
from controller.hub.servicer import AgentServicer, EnrollmentServicer
from controller.passwords import Passwords
from controller.pki import CertificateAuthority
from controller.providers.base import Provider
from controller.providers.local import LocalProvider
from controller.local_relay import LocalRelay
from controller.notifier import make_notifier
from controller.routes import (agent_package, api_keys, auth, clients, docs, ipv6, node_certificates, nodes,
                               operations, panel, regions, streams, subscription, system, users, v2ray_compat,
                               wireguard)
from controller.services.accounts import AccountService
from controller.services.api_keys import ApiKeyService
from controller.services.sign_ins import SignInService
from controller.services.enrollment import EnrollmentService
from controller.services.node_certificates import NodeCertificateService
from controller.services.logs import LogStore
from controller.services.node_state import NodeStateWriter
from controller.services.nodes import NodeService
from controller.services.operations import OperationLog
from controller.services.relay import RelaySync
from controller.services.subscribers import SubscriberService
from controller.services.telemetry import TelemetryIngest, prune_metrics
from controller.services.ipv6_pools import Ipv6PoolService
from controller.services.wireguard import WireguardService
from controller.settings import Settings, is_unix, split_hostport
from controller.tokens import TokenSigner
from protos import agent_pb2_grpc

log = logging.getLogger("vpnfleet")

ROUTE_MODULES = (system, regions, nodes, node_certificates, streams, operations, v2ray_compat, agent_package, wireguard,
                 ipv6, clients, subscription, auth, users, api_keys)


class Controller:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.bus = EventBus()
        self.ca = CertificateAuthority(settings.data_dir / "pki",
                                       agent_validity=dt.timedelta(days=settings.agent_cert_days))
        # who is calling: passwords, access tokens, and the directory of accounts and keys the edge reads
        self.passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                                   min_length=settings.password_min_length)
        self.signer = TokenSigner(settings.data_dir / "jwt", settings.access_token_ttl,
                                  dt.timedelta(days=settings.jwt_key_days))
        self.directory = Directory(self.sessions, self.signer)
        self.limiter = RateLimiter()
        self.operations = OperationLog(self.sessions)
        self.notifier = make_notifier(settings)
        self.sign_ins = SignInService(settings, self.sessions, self.passwords, self.signer, self.directory,
                                      self.notifier, self.operations)
        self.accounts = AccountService(settings, self.sessions, self.passwords, self.directory, notifier=self.notifier)
        self.api_keys = ApiKeyService(settings, self.sessions, self.directory)
        self.logs = LogStore(self.bus, settings.logs_per_node, line_max_bytes=settings.log_line_max_bytes,
                             lines_per_second=settings.log_lines_per_second,
                             max_clock_skew=settings.telemetry_max_clock_skew)
        self.ingest = TelemetryIngest(self.sessions, max_link_mbps=settings.telemetry_max_link_mbps,
                                      max_clock_skew=settings.telemetry_max_clock_skew)
        self.state = NodeStateWriter(self.sessions, self.bus)
        self.hub = Hub(settings, self.sessions, self.state, self.ingest, self.logs)
        self.enrollment = EnrollmentService(self.sessions, self.ca, settings.token_ttl)
        self.certificates = NodeCertificateService(self.sessions, self.ca, self.enrollment, self.hub)
        self.providers = self._make_providers()
        self.nodes = NodeService(settings, self.sessions, self.providers, self.enrollment, self.hub, self.bus,
                                 self.ca.cert_pem, self.bundle, xray_bundle=self.xray_bundle)
        self.wireguard = WireguardService(self.sessions, self.hub)
        self.ipv6 = Ipv6PoolService(self.sessions)
        self.subscribers = SubscriberService(settings, self.sessions, self.hub)
        self.ingest.on_subscriber_usage = self.subscribers.usage_grew.set
        self.ingest.on_latest = self._publish_metrics
        self.relay: RelaySync | None = None
        if settings.v2ray_local_config_path:
            self.relay = RelaySync(settings, self.sessions, self.bus, LocalRelay(
                Path(settings.v2ray_local_config_path), v2ray_binary=settings.v2ray_binary,
                reload_command=settings.v2ray_reload_command))
        self.first_start = FirstStart()
        self._bundle: AgentBundle | None = None
        self._xray_bundle: CoreBundle | None = None
        self._servers: list[grpc.aio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _publish_metrics(self, now: dict[str, dict[str, Any]]) -> None:
        """The fleet overview's live figures: each node's newest sample, to the readers that asked for them
        (/api/v1/events?metrics=true)."""
        for node, metrics in now.items():
            self.bus.publish(Event("metrics", {"node_id": node, "metrics": metrics}, node_id=node))

    def _make_providers(self) -> dict[str, Provider]:
        providers: dict[str, Provider] = {}
        if self.settings.local_enabled:
            providers["local"] = LocalProvider(self.settings.data_dir / "local-nodes")
        if self.settings.regions:
            from controller.providers.ec2 import Ec2Provider  # boto3 is only imported when EC2 is configured

            providers["ec2"] = Ec2Provider(self.settings)
        return providers

    def render_fingerprint(self) -> dict[str, Any]:
        """Settings that shape every node's desired state: when they change between two starts, every node's
        revision is bumped once so agents get the new state (otherwise a reconnecting agent is "in sync")."""
        s = self.settings
        return {"v2ray_enabled": s.v2ray_enabled, "v2ray_port": s.v2ray_port, "v2ray_vless_port": s.v2ray_vless_port,
                "relay_users": [u.email for u in self.hub.extra_v2ray_users], "metrics_interval": s.metrics_interval,
                # per-node ids and the egress policy: a controller upgraded to them pushes them to every node once
                "credentials": "per-node-v1", "egress_blocked_cidrs": list(s.egress_blocked_cidrs),
                "egress_allowed_cidrs": list(s.egress_allowed_cidrs), "egress_block_bittorrent": s.egress_block_bittorrent,
                "v2ray_access_log": s.v2ray_access_log, "v2ray_access_log_addresses": s.v2ray_access_log_addresses,
                "diagnostics_allow_private_targets": s.diagnostics_allow_private_targets,
                # cores and transport profiles: a controller upgraded to them pushes every node once (nodes from
                # before cores drop plain VLESS, or move to Xray with REALITY on their next apply)
                "profiles": "cores-v1", "reality_dest": s.reality_dest,
                "reality_server_names": list(s.reality_server_names),
                "reality_regions": {r.code: [r.reality_dest, list(r.reality_server_names)] for r in s.regions
                                    if r.reality_dest or r.reality_server_names},
                "v2ray_tls": ([s.v2ray_tls.domain, s.v2ray_tls.certificate_file, s.v2ray_tls.key_file,
                               s.v2ray_tls.vmess_port, s.v2ray_tls.vless_port] if s.v2ray_tls else None)}

    def bundle(self) -> AgentBundle:
        assert self._bundle is not None, "controller not started"
        return self._bundle

    def xray_bundle(self) -> CoreBundle | None:
        """The Xray binary nodes download, or None: this controller has none, its nodes run V2Ray only."""
        return self._xray_bundle

    async def start(self) -> None:
        await prepare_database(self.engine)
        self.first_start = await bootstrap_admin(self.sessions, self.settings.data_dir, self.passwords.hash)
        await asyncio.to_thread(self.signer.load)
        await self.directory.load()
        self._bundle = await asyncio.to_thread(build_agent_wheel, self.settings.data_dir / "agent-package")
        self._xray_bundle = await asyncio.to_thread(load_core_bundle, self.settings.data_dir / "agent-package")
        if self.relay is not None:
            self.hub.extra_v2ray_users = [await self.relay.prepare()]
        await self.nodes.refresh_desired_states(self.render_fingerprint())
        await self._start_grpc()
        await self.hub.prime()
        loops = [self.state.run(), self.ingest.run(), self.hub.run_pusher(), self.hub.run_liveness(),
                 self.nodes.run_sync_loop(), self._prune_loop(), self._expiry_loop(), self.subscribers.run_schedule(),
                 self.operations.run_retention(self.settings.audit_retention_days),
                 self.directory.run_last_used_flush(), self._jwt_rotation_loop()]
        if self.relay is not None:
            loops.append(self.relay.run())
        for loop in loops:
            self._tasks.append(asyncio.create_task(loop))
        await self.nodes.resume()

    async def _start_grpc(self) -> None:
        adv = self.settings.advertised_grpc
        pair = self.ca.server_keypair([] if is_unix(adv) else [split_hostport(adv)[0]])
        mtls = grpc.aio.server(options=server_options())
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self.hub, self.certificates, self.ca.cert_pem), mtls)
        mtls.add_secure_port(self.settings.grpc_addr, grpc.ssl_server_credentials(
            [(pair.key_pem, pair.cert_pem)], root_certificates=self.ca.cert_pem, require_client_auth=True))
        enroll = grpc.aio.server(options=enrollment_server_options())
        agent_pb2_grpc.add_EnrollmentServicer_to_server(EnrollmentServicer(self.enrollment, self.ca.cert_pem), enroll)
        enroll.add_secure_port(self.settings.enroll_addr, grpc.ssl_server_credentials([(pair.key_pem, pair.cert_pem)]))
        for server in (mtls, enroll):
            await server.start()
            self._servers.append(server)

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                async with self.sessions() as s:
                    await prune_metrics(s, self.settings.metrics_retention_days)
            except Exception:
                log.exception("pruning old metrics failed")

    async def _jwt_rotation_loop(self, period: float = 3600.0) -> None:
        """The JWT signing key is replaced every auth.jwt_key_days (checked hourly)."""
        while True:
            await asyncio.sleep(period)
            try:
                if await asyncio.to_thread(self.signer.rotate_if_due):
                    log.info("rotated the JWT signing key (the old one verifies its tokens until they expire)")
            except Exception:
                log.exception("rotating the JWT signing key failed")

    async def _expiry_loop(self, period: float = 15.0) -> None:
        """Expired WireGuard clients leave their nodes within ``period`` seconds."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.wireguard.expire_clients()
            except Exception:
                log.exception("expiring WireGuard clients failed")

    def announce_shutdown(self) -> None:
        """Tell live streams the controller is going away (called as soon as the signal arrives)."""
        self.bus.publish(Event("shutdown", {"reason": "controller shutting down"}))

    async def stop(self) -> None:
        self.announce_shutdown()
        await self.hub.shutdown("controller shutting down")
        await asyncio.gather(*(s.stop(grace=1.0) for s in self._servers), return_exceptions=True)
        await self.nodes.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.state.flush()
        with contextlib.suppress(Exception):
            await self.directory.flush_last_used()
        with contextlib.suppress(Exception):
            await self.sign_ins.wait_for_messages()  # reset codes still being mailed
        for provider in self.providers.values():
            await provider.close()
        await self.engine.dispose()


def create_app(settings: Settings) -> FastAPI:
    ctl = Controller(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctl.start()
        try:
            yield
        finally:
            await ctl.stop()

    app = FastAPI(
        title="vpnfleet", version=__version__,
        # /openapi.json and /docs are served by controller.routes.docs (edge responses, a trimmed Swagger UI)
        openapi_url=None, docs_url=None, redoc_url=None,
        middleware=[Middleware(RequestIdMiddleware),
                    Middleware(SecurityHeadersMiddleware, hsts=settings.tls_enabled),
                    Middleware(InputGuardMiddleware),
                    Middleware(AuthMiddleware, directory=ctl.directory, limiter=ctl.limiter,
                               failures_per_window=settings.auth_failures_per_window,
                               failure_window=settings.auth_failure_window,
                               authenticated_per_minute=settings.rate_limit_authenticated,
                               anonymous_per_minute=settings.rate_limit_anonymous,
                               subscription_per_minute=settings.rate_limit_subscription,
                               operations=ctl.operations),
                    Middleware(AuditMiddleware, operations=ctl.operations),
                    # inside Audit (refused bodies are recorded) and Auth (anonymous callers make it scan nothing)
                    Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                               max_json_depth=settings.max_json_depth)],
        exception_handlers={DomainError: domain_error_handler, HTTPException: http_error_handler,
                            RequestValidationError: request_validation_handler, Exception: internal_error_handler},
        lifespan=lifespan,
    )
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    app.include_router(docs.router)
    app.include_router(panel.router)
    # every route declares what it needs (controller.access): one that does not, does not start
    check_routes(http_routes(app.routes), is_public)
    app.state.ctl = ctl
    return app


@contextlib.contextmanager
def app_to_read() -> Iterator[FastAPI]:
    """The app built on a throwaway data dir and never started: for reading its routes and its OpenAPI document
    (docs/permissions.md, the panel's API types)."""
    with tempfile.TemporaryDirectory() as data_dir:
        yield create_app(Settings(data_dir=Path(data_dir)))
