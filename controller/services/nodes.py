"""Nodes: create, list, start/stop/reboot, delete, and the durable work behind them.

The node's ``status`` *is* its job record. Every transitional status (pending, creating, starting, stopping,
deleting) has a driver task that moves the node on; at controller start ``resume()`` restarts a driver for
every node left in such a status, so work cut short by a crash or kill -9 is resumed or reconciled, and
``instance_wait_timeout`` guarantees nothing stays transitional forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from typing import Any, Callable, get_args

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agent.config import AgentConfig
from controller import reality
from controller.agent_bundle import AgentBundle
from controller.cloudinit import Download, XrayDownload, render_user_data
from controller.rest_tls import download_ca_pem
from controller.core_bundle import CoreBundle
from controller.db import fetch_page
from controller.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from controller.events import Event, EventBus
from controller.hub.hub import Hub
from controller.models import EnrollmentToken, FleetSetting, Node, utcnow
from controller.providers.base import STOPPED, TERMINATED, Instance, LaunchRequest, Provider, ProviderError
from controller.schemas.nodes import NodeAgentSettings, NodeCreate, NodeStatus, NodeUpdate, RealityInput
from controller.serializers import node_to_dict
from controller.services.desired_state import (EDITABLE_AGENT_SETTINGS, FLEET_AGENT_SETTINGS_KEY, build_inbounds,
                                               is_legacy, node_core, node_ports, slot_ports,
                                               validate_agent_settings)
from controller.services.enrollment import EnrollmentService
from controller.settings import CORES, Settings

RENDER_FINGERPRINT_KEY = "render_fingerprint"

log = logging.getLogger("vpnfleet.nodes")

STATUSES: tuple[str, ...] = get_args(NodeStatus)
#: seed 000: a region "has an active instance" while one is in these states
ACTIVE = ("pending", "creating", "running")
TRANSITIONAL = ("pending", "creating", "starting", "stopping", "deleting")

#: seconds between provider polls while waiting for a machine
POLL_INTERVAL = 1.0
#: the window of nodes.creations_per_minute
CREATION_WINDOW = dt.timedelta(minutes=1)


def _check_core(core: Any) -> str:
    if not isinstance(core, str) or core.strip().lower() not in CORES:
        raise ValidationFailed(f"core must be one of {', '.join(CORES)}, not {core!r}",
                               {"core": f"unknown core (use {' or '.join(CORES)})"})
    return core.strip().lower()


class NodeService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], providers: dict[str, Provider],
                 enrollment: EnrollmentService, hub: Hub, bus: EventBus, ca_pem: bytes,
                 bundle: Callable[[], AgentBundle],
                 xray_bundle: Callable[[], CoreBundle | None] = lambda: None) -> None:
        self.settings = settings
        self._sessions = sessions
        self.providers = providers
        self._enrollment = enrollment
        self._hub = hub
        self._bus = bus
        self._ca_pem = ca_pem
        self._bundle = bundle
        self._xray_bundle = xray_bundle
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._region_locks: dict[str, asyncio.Lock] = {}
        hub.on_connected = self.agent_connected

    # -- queries ------------------------------------------------------------------------------------------------
    async def get(self, node_id: str, include_deleted: bool = True) -> Node:
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id))
        if node is None or (node.is_deleted and not include_deleted):
            raise NotFound(f"node {node_id} not found")
        return node

    async def list(self, *, status: str | None = None, region: str | None = None, online: bool | None = None,
                   search: str | None = None, include_deleted: bool = False, page: int = 1,
                   size: int = 50) -> tuple[list[Node], int]:
        """Nodes newest first, with the total count matching the filters."""
        query = select(Node)
        if status:
            query = query.where(Node.status == status)
        elif not include_deleted:
            query = query.where(Node.is_deleted.is_(False))
        if region:
            query = query.where(Node.region == region)
        if online is not None:
            query = query.where(Node.online.is_(online))
        if search:
            # autoescape: "_" and "%" in the search text are literal characters, not wildcards
            query = query.where(or_(*(col.icontains(search, autoescape=True)
                                      for col in (Node.name, Node.uuid, Node.public_ip, Node.instance_id))))
        async with self._sessions() as s:
            return await fetch_page(s, query, (Node.created_at.desc(), Node.id.desc()), page, size)

    # -- create -------------------------------------------------------------------------------------------------
    def _xray_download(self, token: str) -> XrayDownload | None:
        """Where a new node gets Xray: the operator's release mirror (v2ray.xray_release), else the controller's
        own binary (not secret: sha256-pinned in the user data, like the agent wheel); None: nowhere, the node
        runs V2Ray only."""
        release = self.settings.xray_release
        if release is not None:
            return XrayDownload(url=release.url, sha256=release.sha256, filename=release.filename, arch=release.arch)
        own = self._xray_bundle()
        if own is None:
            return None
        return XrayDownload(url=f"{self.settings.http_url}/agent/package/{own.filename}",
                            sha256=own.sha256, filename=own.filename, arch=own.arch)

    def _xray_available(self) -> bool:
        return self.settings.xray_release is not None or self._xray_bundle() is not None

    def _core_for_new_node(self, requested: Any) -> str:
        """The core a new node runs: the one asked for, else v2ray.core. Xray needs a binary to install on the
        node (the controller's own, controller/core_bundle.py): without one a default of xray falls back to
        v2ray (VMess only), and asking for xray explicitly is refused. (v2ray.xray_release names another source.)"""
        if requested is not None:
            core = _check_core(requested)
            if core == "xray" and not self._xray_available():
                raise ValidationFailed("this controller has no Xray binary to install on nodes (set $VPNFLEET_XRAY, "
                                       "put xray on PATH, or configure v2ray.xray_release)",
                                       {"core": "no Xray binary available"})
            return core
        core = self.settings.v2ray_core
        if core == "xray" and not self._xray_available():
            log.warning("no Xray binary to install on nodes: the new node runs v2ray (VMess only)")
            return "v2ray"
        return core

    async def create(self, cmd: NodeCreate, *, reuse_active: bool = False) -> tuple[Node, bool]:
        """Create a node in ``cmd.region`` (``cmd.core`` default v2ray.core; ``cmd.reality``: the node's own
        REALITY target, xray only). With reuse_active (seed 000), an active node of the region is returned
        instead. The node gets its own REALITY key pair, a short id and a ws path now: they stay the same for
        the node's life. A region holds at most nodes.max_per_region live nodes (409 beyond) and gets at most
        nodes.creations_per_minute new ones a minute (429 with Retry-After beyond). Returns (node, created)."""
        region = cmd.region
        spec = self.settings.region(region)
        if spec is None:
            known = ", ".join(r.code for r in self.settings.all_regions()) or "none"
            raise ValidationFailed(f"unknown region '{region}' (configured: {known})", {"region": "unknown region"})
        if spec.provider not in self.providers:
            raise ValidationFailed(f"region '{region}' uses provider '{spec.provider}', which is not configured",
                                   {"region": "provider not configured"})
        core = self._core_for_new_node(cmd.core)
        target = self._reality_values(region, core, None, None, None, cmd.reality)
        lock = self._region_locks.setdefault(region, asyncio.Lock())
        async with lock:  # with the checks below: two concurrent seed-000 creates make one node, quotas hold
            async with self._sessions() as s:
                if reuse_active:
                    active = await s.scalar(select(Node).where(Node.region == region, Node.status.in_(ACTIVE),
                                                               Node.is_deleted.is_(False)).with_for_update()
                                            .order_by(Node.created_at.desc()).limit(1))
                    if active is not None:
                        return active, False
                await self._check_capacity(s, region)
                ports = self._v2ray_ports(self.providers[spec.provider])
                private_key, public_key = reality.new_keypair()
                node = Node(name="", region=region, region_name=spec.name, provider=spec.provider,
                            status="pending", status_changed_at=utcnow(), core=core, v2ray_ports=ports,
                            v2ray_inbounds=build_inbounds(core, ports, self.settings.v2ray_tls is not None),
                            reality_private_key=private_key, reality_public_key=public_key,
                            reality_short_ids=target["short_ids"] or [reality.new_short_id()],
                            reality_dest=target["dest"], reality_server_names=target["server_names"],
                            ws_path=reality.new_ws_path())
                s.add(node)
                await s.flush()
                node.name = cmd.name or f"{region}-{node.uuid[:8]}"
                await s.commit()
        self._bus.publish(Event("create", {"node": node_to_dict(node)}, node_id=node.uuid))
        log.info("node %s created in region %s (core %s)", node.uuid, region, core)
        self._drive(node.uuid)
        return node, True

    async def _check_capacity(self, s: AsyncSession, region: str) -> None:
        """Refuse a new node beyond the region's quota (live nodes) or creation rate. Counted in the database
        (under the region lock), so a restart does not reset the rate and deleted nodes still count towards it."""
        quota = self.settings.max_nodes_per_region
        live = await s.scalar(select(func.count()).select_from(Node)
                              .where(Node.region == region, Node.is_deleted.is_(False))) or 0
        if live >= quota:
            raise Conflict(f"region '{region}' already has {live} nodes, its quota (nodes.max_per_region) is "
                           f"{quota}; delete a node first", {"region": "node quota reached"})
        rate = self.settings.node_creations_per_minute
        now = utcnow()
        recent = (await s.scalars(select(Node.created_at).where(Node.region == region,
                                                                 Node.created_at > now - CREATION_WINDOW)
                                  .order_by(Node.created_at))).all()
        if len(recent) >= rate:
            # the creation that must leave the window before one more fits in it
            frees_at = recent[len(recent) - rate] + CREATION_WINDOW if rate > 0 else now + CREATION_WINDOW
            wait = max(1, math.ceil((frees_at - now).total_seconds()))
            raise TooManyRequests(f"region '{region}' had {len(recent)} nodes created in the last minute, its "
                                  f"limit (nodes.creations_per_minute) is {rate}; retry in {wait} s", wait,
                                  {"region": "node creation rate reached", "retry_after": wait})

    def _v2ray_ports(self, provider: Provider | None, node: Node | None = None) -> dict[str, dict[str, Any]]:
        """The node's port for every slot its profiles may need ({slot: {port, listen}}): what it has, and for
        each missing slot a port from the provider (the settings' ports where the provider allows; the local
        provider picks free ones). VMess and VLESS slots are set aside at creation, the ws-tls slots once
        v2ray.tls is configured; then they stay. A node from before cores keeps its old ports (the settings'
        ones where it stored none, as it was rendered)."""
        defaults = slot_ports(self.settings)
        ports = node_ports(node, {}) if node is not None else {}
        if node is not None and is_legacy(node):
            ports = node_ports(node, {slot: defaults[slot] for slot in ("vmess", "vless")})
        wanted = ["vmess", "vless"] + (["vmess-ws-tls", "vless-ws-tls"] if self.settings.v2ray_tls else [])
        missing = {slot: defaults[slot] for slot in wanted if slot not in ports}
        if missing:
            if provider is not None:
                listen, given = provider.service_ports(missing)
            else:  # the node's provider is no longer configured: the settings' ports
                listen, given = next(iter(ports.values()), {}).get("listen", ""), missing
            ports |= {slot: {"port": int(port), "listen": listen} for slot, port in given.items()}
        return ports

    def _reality_values(self, region: str, core: str, dest: str | None, server_names: list[str] | None,
                        short_ids: list[str] | None, change: RealityInput | None) -> dict[str, Any]:
        """The node's REALITY settings after applying the API's `change` (the fields it set; a None dest or
        server_names goes back to the region's/fleet's) to the current ones. Raises ValidationFailed naming
        the field: REALITY on a v2ray node, a bad dest, server name or short id, or a dest that does not serve
        the server names."""
        values = {"dest": dest, "server_names": server_names, "short_ids": short_ids}
        overrides = change.changes() if change is not None else {}
        if not overrides:
            return values
        if core != "xray":
            raise ValidationFailed("reality: REALITY needs the xray core (V2Ray 4.x has no REALITY); set core to "
                                   "xray, or leave reality out", {"reality": "REALITY needs core xray"})
        checks = {"dest": reality.check_dest, "server_names": reality.check_server_names,
                  "short_ids": reality.check_short_ids}
        for key, value in overrides.items():
            if value is None and key == "short_ids":
                raise ValidationFailed("reality.short_ids cannot be removed (subscriptions carry the first one)",
                                       {"reality.short_ids": "must be a non-empty list"})
            try:
                values[key] = None if value is None else checks[key](value)
            except ValueError as exc:
                raise ValidationFailed(f"reality.{key}: {exc}", {f"reality.{key}": str(exc)}) from None
        fleet_dest, fleet_names = self.settings.reality_target(region)
        try:
            reality.check_target(values["dest"] or fleet_dest, list(values["server_names"] or fleet_names))
        except ValueError as exc:
            field = "reality.dest" if "dest" in overrides else "reality.server_names"
            raise ValidationFailed(f"{field}: {exc}", {field: "dest does not serve the server names"}) from None
        return values

    # -- actions ------------------------------------------------------------------------------------------------
    async def delete(self, node_id: str) -> Node:
        node = await self.get(node_id, include_deleted=False)
        if node.status != "deleting":
            node = await self._set_status(node_id, "deleting", None)
        self._hub.disconnect(node_id, "node is being deleted")
        self._drive(node_id, restart=True)
        return node

    async def start(self, node_id: str) -> Node:
        node = await self.get(node_id, include_deleted=False)
        if node.status in ("running", "starting"):
            return node
        if node.status not in ("stopped", "error") or not node.instance_id:
            raise Conflict(f"node {node_id} is {node.status}; only a stopped node can be started")
        node = await self._set_status(node_id, "starting", None)
        self._drive(node_id, restart=True)
        return node

    async def stop(self, node_id: str) -> Node:
        node = await self.get(node_id, include_deleted=False)
        if node.status in ("stopped", "stopping"):
            return node
        if node.status not in ("running", "error") or not node.instance_id:
            raise Conflict(f"node {node_id} is {node.status}; only a running node can be stopped")
        node = await self._set_status(node_id, "stopping", None)
        self._drive(node_id, restart=True)
        return node

    async def reboot(self, node_id: str) -> Node:
        node = await self.get(node_id, include_deleted=False)
        if node.status != "running" or not node.instance_id:
            raise Conflict(f"node {node_id} is {node.status}; only a running node can be rebooted")
        await self._call_provider(node, "reboot")
        return node

    async def update(self, node_id: str, cmd: NodeUpdate) -> Node:
        """PATCH: rename, override agent settings, switch the core or change the REALITY settings (each only if
        given). Everything is checked before anything changes; the core and REALITY change together as one
        new revision."""
        node = await self.get(node_id, include_deleted=False)
        if cmd.agent_settings is not None:  # checked before anything changes
            self._agent_settings_of(cmd.agent_settings)
        if cmd.core is not None or (cmd.reality is not None and cmd.reality.changes()):
            node = await self.update_v2ray(node_id, cmd.core, cmd.reality)
        if cmd.agent_settings is not None:
            node = await self.update_agent_settings(node_id, cmd.agent_settings)
        if cmd.name is not None:
            node = await self.rename(node_id, cmd.name)
        return node

    @staticmethod
    def _agent_settings_of(body: NodeAgentSettings) -> dict[str, Any]:
        """The settings the body gave, checked the way the fleet's are (one rule for both)."""
        return validate_agent_settings(body.model_dump(exclude_none=True), "agent_settings")

    async def update_agent_settings(self, node_id: str, overrides: NodeAgentSettings) -> Node:
        """Merge per-node agent settings and push the new desired state."""
        clean = self._agent_settings_of(overrides)
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id, Node.is_deleted.is_(False)))
            if node is None:
                raise NotFound(f"node {node_id} not found")
            node.agent_settings = {**(node.agent_settings or {}), **clean}
            node.desired_revision += 1
            await s.commit()
        self._hub.mark_dirty([node_id])
        self._bus.publish(Event("update", {"node": node_to_dict(node)}, node_id=node_id))
        return node

    async def update_v2ray(self, node_id: str, core: str | None = None,
                           reality_change: RealityInput | None = None) -> Node:
        """Change the node's core and/or its REALITY settings (the fields ``reality_change`` set). A change is
        structural on the node (one restart of the core, rolled back on failure): it gets a new desired
        revision. A node from before cores takes the new profile set of the core now."""
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id, Node.is_deleted.is_(False)))
            if node is None:
                raise NotFound(f"node {node_id} not found")
            new_core = node_core(node) if core is None else _check_core(core)
            values = self._reality_values(node.region, new_core, node.reality_dest, node.reality_server_names,
                                          node.reality_short_ids, reality_change)
            changed = is_legacy(node) or new_core != node.core
            if changed:
                ports = self._v2ray_ports(self.providers.get(node.provider), node)
                node.core, node.v2ray_ports = new_core, ports
                node.v2ray_inbounds = build_inbounds(new_core, ports, self.settings.v2ray_tls is not None)
            for key, column in (("dest", "reality_dest"), ("server_names", "reality_server_names"),
                                ("short_ids", "reality_short_ids")):
                if values[key] != getattr(node, column):
                    setattr(node, column, values[key])
                    changed = True
            if changed:
                node.desired_revision += 1
            await s.commit()
        if changed:
            log.info("node %s: core %s, REALITY settings %s", node_id, node.core,
                     "changed" if reality_change is not None and reality_change.changes() else "kept")
            self._hub.mark_dirty([node_id])
            self._publish_update(node)
        return node

    async def move_to_profiles(self, node_id: str) -> bool:
        """A node from before cores whose agent reported the "xray" capability: switch it to Xray with the new
        profile set (VMess, and VLESS-REALITY-Vision on its old VLESS port). Without the capability it stays
        as it is (rendered as V2Ray with VMess only) until its agent has Xray or an operator sets its core.
        Returns whether the node was moved."""
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id, Node.is_deleted.is_(False)))
            if node is None or not is_legacy(node) or node_core(node) != "xray":
                return False
            ports = self._v2ray_ports(self.providers.get(node.provider), node)
            node.core, node.v2ray_ports = "xray", ports
            node.v2ray_inbounds = build_inbounds("xray", ports, self.settings.v2ray_tls is not None)
            node.desired_revision += 1
            await s.commit()
        log.info("node %s: its agent has Xray: moved to core xray (VMess + VLESS-REALITY-Vision)", node_id)
        self._hub.mark_dirty([node_id])
        self._publish_update(node)
        return True

    async def refresh_profiles(self) -> int:
        """Re-derive every current node's inbounds from its core and ports (v2ray.tls was configured or
        removed): called when the desired-state settings changed. Nodes from before cores are left to
        move_to_profiles. Returns how many changed."""
        changed = 0
        async with self._sessions() as s:
            nodes = (await s.scalars(select(Node).where(Node.is_deleted.is_(False)))).all()
            for node in nodes:
                if is_legacy(node):
                    continue
                ports = self._v2ray_ports(self.providers.get(node.provider), node)
                inbounds = build_inbounds(node.core, ports, self.settings.v2ray_tls is not None)
                if inbounds != node.v2ray_inbounds or ports != node.v2ray_ports:
                    node.v2ray_inbounds, node.v2ray_ports = inbounds, ports
                    changed += 1
            await s.commit()
        return changed

    async def rename(self, node_id: str, name: str) -> Node:
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id, Node.is_deleted.is_(False)))
            if node is None:
                raise NotFound(f"node {node_id} not found")
            node.name = name
            await s.commit()
        self._publish_update(node)
        return node

    async def refresh_desired_states(self, fingerprint: dict[str, Any]) -> bool:
        """At start: if the settings that shape desired states changed since the last start, bump every node's
        revision once so each agent receives the new state when it reconnects. Returns whether it did."""
        async with self._sessions() as s:
            row = await s.get(FleetSetting, RENDER_FINGERPRINT_KEY)
            if row is not None and row.value == fingerprint:
                return False
            if row is None:
                s.add(FleetSetting(key=RENDER_FINGERPRINT_KEY, value=fingerprint))
            else:
                row.value = fingerprint
            await s.execute(update(Node).where(Node.is_deleted.is_(False))
                            .values(desired_revision=Node.desired_revision + 1))
            await s.commit()
        await self.refresh_profiles()  # e.g. v2ray.tls configured: every node serves the ws-tls profiles
        log.info("desired-state settings changed since the last start: every node gets a new revision")
        return True

    async def fleet_agent_settings(self) -> dict[str, Any]:
        async with self._sessions() as s:
            fleet = await self._hub.fleet_agent_settings(s)
        merged = {**self._hub.default_agent_settings(), **fleet}
        return {k: merged[k] for k in EDITABLE_AGENT_SETTINGS if k in merged}  # what PUT takes back

    async def set_fleet_agent_settings(self, change: NodeAgentSettings) -> dict[str, Any]:
        """Change the agent settings of every node (unless overridden): one revision bump for all nodes."""
        clean = validate_agent_settings(change.model_dump(exclude_unset=True), "agent_settings")
        async with self._sessions() as s:
            row = await s.get(FleetSetting, FLEET_AGENT_SETTINGS_KEY)
            if row is None:
                s.add(FleetSetting(key=FLEET_AGENT_SETTINGS_KEY, value=clean))
            else:
                row.value = {**row.value, **clean}
            await s.execute(update(Node).where(Node.is_deleted.is_(False))
                            .values(desired_revision=Node.desired_revision + 1))
            await s.commit()
        self._hub.mark_all_dirty()
        return await self.fleet_agent_settings()

    # -- agent events -------------------------------------------------------------------------------------------
    async def agent_connected(self, node_id: str) -> None:
        node = await self.get(node_id)
        if node.status in ("creating", "starting", "error"):
            await self._set_status(node_id, "running", None)
        if is_legacy(node):  # from before cores: its Hello (stored capabilities) decides where it moves
            await self.move_to_profiles(node_id)

    # -- durable work -------------------------------------------------------------------------------------------
    async def resume(self) -> None:
        """Restart the driver of every node a previous controller left in a transitional status."""
        async with self._sessions() as s:
            ids = (await s.scalars(select(Node.uuid).where(Node.status.in_(TRANSITIONAL)))).all()
        for node_id in ids:
            log.info("resuming work on node %s", node_id)
            self._drive(node_id)

    def _drive(self, node_id: str, restart: bool = False) -> None:
        task = self._tasks.get(node_id)
        if task is not None and not task.done():
            if not restart:
                return
            task.cancel()
        self._tasks[node_id] = asyncio.create_task(self._run_driver(node_id), name=f"node-{node_id}")

    async def _run_driver(self, node_id: str) -> None:
        try:
            while True:
                node = await self.get(node_id)
                if node.status == "pending" or (node.status == "creating" and not node.instance_id):
                    await self._launch(node)
                elif node.status in ("creating", "starting"):
                    await self._await_agent(node)
                    return
                elif node.status == "stopping":
                    await self._stop_machine(node)
                    return
                elif node.status == "deleting":
                    await self._terminate(node)
                    return
                else:
                    return
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            log.error("node %s: %s", node_id, exc)
            await self._set_status(node_id, "error", str(exc))
        except Exception as exc:  # never leave a node transitional because of a bug
            log.exception("node %s: driver failed", node_id)
            await self._set_status(node_id, "error", f"internal error: {exc}")
        finally:
            if self._tasks.get(node_id) is asyncio.current_task():
                del self._tasks[node_id]

    async def _launch(self, node: Node) -> None:
        provider = self.providers[node.provider]
        existing = await provider.find(node.region, node.uuid)
        if existing is None or existing.state == TERMINATED:
            async with self._sessions() as s:
                token = await self._enrollment.issue_token(s, node.uuid)
                row = await s.get(Node, node.id)
                if row.status == "pending":
                    row.status, row.status_changed_at = "creating", utcnow()
                await s.commit()
            self._publish_update(await self.get(node.uuid))
            bundle = self._bundle()
            agent_config = AgentConfig(
                grpc_addr=self.settings.advertised_grpc, enroll_addr=self.settings.advertised_enroll,
                ca_cert_pem=self._ca_pem.decode(), enrollment_token=token, node_name=node.name,
                metrics_interval_seconds=self.settings.metrics_interval,
            )
            xray = self._xray_download(token)
            user_data = render_user_data(
                agent_config, package_url=f"{self.settings.http_url}/agent/package/{bundle.filename}",
                package_sha256=bundle.sha256, package_filename=bundle.filename,
                template_path=self.settings.cloud_init_template, xray=xray,
                requirements=Download(url=f"{self.settings.http_url}/agent/package/{bundle.requirements.filename}",
                                      sha256=bundle.requirements.sha256, filename=bundle.requirements.filename),
                download_ca_pem=download_ca_pem(self.settings, self._ca_pem),
            )
            existing = await provider.launch(LaunchRequest(node_id=node.uuid, node_name=node.name,
                                                           region=node.region, user_data=user_data,
                                                           agent_config=agent_config))
        elif existing.state == STOPPED:  # adopted after a crash, but the machine is down: boot it
            await provider.start(node.region, existing.instance_id)
        await self._record_instance(node.uuid, existing, status="creating")

    async def _await_agent(self, node: Node) -> None:
        """Wait for the agent of a creating/starting node to connect, within instance_wait_timeout."""
        provider = self.providers[node.provider]
        if node.status == "starting":
            await provider.start(node.region, node.instance_id)
        loop = asyncio.get_running_loop()
        next_describe = 0.0
        while True:
            node = await self.get(node.uuid)
            if node.status not in ("creating", "starting"):
                return
            if node.uuid in self._hub.sessions:  # connected before we started waiting (a Hello is not repeated)
                await self._set_status(node.uuid, "running", None)
                return
            waited = (utcnow() - node.status_changed_at).total_seconds()
            if waited > self.settings.instance_wait_timeout:
                await self._set_status(node.uuid, "error", f"agent did not connect within "
                                       f"{self.settings.instance_wait_timeout:g}s of {node.status}")
                return
            if loop.time() >= next_describe:
                next_describe = loop.time() + 5 * POLL_INTERVAL
                inst = await provider.describe(node.region, node.instance_id)
                if inst is None or inst.state == TERMINATED:
                    await self._set_status(node.uuid, "error", f"instance {node.instance_id} disappeared "
                                           f"while {node.status}")
                    return
                if inst.public_ip != node.public_ip:
                    await self._record_instance(node.uuid, inst)
            await asyncio.sleep(POLL_INTERVAL)

    async def _stop_machine(self, node: Node) -> None:
        provider = self.providers[node.provider]
        self._hub.disconnect(node.uuid, "node is stopping")
        await provider.stop(node.region, node.instance_id)
        deadline = asyncio.get_running_loop().time() + self.settings.instance_wait_timeout
        while asyncio.get_running_loop().time() < deadline:
            inst = await provider.describe(node.region, node.instance_id)
            if inst is None or inst.state in (STOPPED, TERMINATED):
                await self._set_status(node.uuid, "stopped", None)
                return
            await asyncio.sleep(POLL_INTERVAL)
        await self._set_status(node.uuid, "error", "machine did not stop in time")

    async def _terminate(self, node: Node) -> None:
        provider = self.providers.get(node.provider)
        instance_id = node.instance_id
        if provider is not None:
            if instance_id is None:
                found = await provider.find(node.region, node.uuid)
                instance_id = found.instance_id if found else None
            if instance_id is not None:
                await provider.terminate(node.region, instance_id)
        self._hub.disconnect(node.uuid, "node deleted")
        self._hub.ingest.forget(node.uuid)
        async with self._sessions() as s:
            row = await s.get(Node, node.id)
            row.status, row.status_reason, row.status_changed_at = "deleted", None, utcnow()
            row.is_deleted, row.deleted_at, row.online = True, utcnow(), False
            await s.execute(update(EnrollmentToken).where(EnrollmentToken.node_uuid == node.uuid,
                                                          EnrollmentToken.used_at.is_(None)).values(used_at=utcnow()))
            await s.commit()
        self._bus.publish(Event("delete", {"node": node_to_dict(row)}, node_id=node.uuid))
        log.info("node %s deleted", node.uuid)

    async def _call_provider(self, node: Node, action: str) -> None:
        provider = self.providers[node.provider]
        try:
            await getattr(provider, action)(node.region, node.instance_id)
        except ProviderError as exc:
            raise Conflict(f"{action} failed: {exc}") from exc

    # -- sync with providers ----------------------------------------------------------------------------------
    async def run_sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.instance_sync_interval)
            try:
                await self.sync_once()
            except Exception:
                log.exception("instance sync failed")

    async def sync_once(self) -> None:
        """Reconcile the database with what the providers really run (changes made outside vpnfleet)."""
        async with self._sessions() as s:
            nodes = (await s.scalars(select(Node).where(Node.is_deleted.is_(False),
                                                        Node.instance_id.is_not(None)))).all()
        by_region: dict[str, list[Node]] = {}
        for node in nodes:
            by_region.setdefault(node.region, []).append(node)
        for region, region_nodes in by_region.items():
            provider = self.providers.get(region_nodes[0].provider)
            if provider is None:
                continue
            try:
                instances = {i.instance_id: i for i in await provider.list_instances(region)}
            except ProviderError as exc:
                log.warning("sync of region %s failed: %s", region, exc)
                continue
            for node in region_nodes:
                if node.status in TRANSITIONAL:
                    continue  # its driver owns it
                inst = instances.get(node.instance_id)
                if inst is None or inst.state == TERMINATED:
                    if node.status != "error":
                        await self._set_status(node.uuid, "error",
                                               f"instance {node.instance_id} was terminated outside vpnfleet")
                elif inst.state == STOPPED and node.status == "running":
                    await self._set_status(node.uuid, "stopped", "stopped outside vpnfleet")
                elif inst.public_ip != node.public_ip:
                    await self._record_instance(node.uuid, inst)

    # -- helpers ------------------------------------------------------------------------------------------------
    async def _set_status(self, node_id: str, status: str, reason: str | None) -> Node:
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id))
            if node.status != status or node.status_reason != reason:
                log.info("node %s: %s -> %s%s", node_id, node.status, status, f" ({reason})" if reason else "")
                node.status, node.status_reason, node.status_changed_at = status, reason, utcnow()
                await s.commit()
        self._publish_update(node)
        return node

    async def _record_instance(self, node_id: str, inst: Instance, status: str | None = None) -> None:
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_id))
            node.instance_id, node.public_ip, node.private_ip = inst.instance_id, inst.public_ip, inst.private_ip
            if status and node.status != status:
                node.status, node.status_changed_at = status, utcnow()
            await s.commit()
        self._publish_update(node)

    def _publish_update(self, node: Node) -> None:
        self._bus.publish(Event("update", {"node": node_to_dict(node)}, node_id=node.uuid))

    async def close(self) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
