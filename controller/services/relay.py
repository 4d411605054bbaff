"""Keeps the local relay (controller/local_relay.py) in step with the running nodes.

The relay connects to the nodes as a V2Ray user of its own ("vpnfleet-relay", a per-node id derived from a
secret kept in the fleet settings), which every node carries besides the subscribers. The sync runs at start, whenever a node
event arrives (a node started, stopped or was deleted) and every `period` seconds as a safety net; a failed
sync (V2Ray rejected the config, reload failed) is logged and retried on the next trigger.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller import credentials
from controller.events import EventBus
from controller.local_relay import LocalRelay, RelayError, RelayNode
from controller.models import FleetSetting
from controller.services.desired_state import NodeUser, node_v2ray_inbounds, reachable_nodes
from controller.settings import Settings

log = logging.getLogger("vpnfleet.relay")

RELAY_EMAIL = "vpnfleet-relay"
RELAY_SETTING_KEY = "local_relay"


class RelaySync:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], bus: EventBus,
                 relay: LocalRelay, period: float = 30.0) -> None:
        self.settings = settings
        self._sessions = sessions
        self._bus = bus
        self.relay = relay
        self.period = period
        self.secret = ""
        self.last_error: str | None = None

    async def prepare(self) -> NodeUser:
        """The relay's own V2Ray user (its secret made once, kept in the fleet settings). Like a subscriber's,
        its id differs per node, so a node only learns the relay id that works on it."""
        async with self._sessions() as s:
            row = await s.get(FleetSetting, RELAY_SETTING_KEY)
            if row is None or "secret" not in row.value:  # (before per-node ids the row held one shared uuid)
                value = {"secret": credentials.new_secret()}
                if row is None:
                    s.add(FleetSetting(key=RELAY_SETTING_KEY, value=value))
                else:
                    row.value = value
                await s.commit()
                self.secret = value["secret"]
            else:
                self.secret = row.value["secret"]
        return NodeUser(email=RELAY_EMAIL, secret=self.secret)

    async def nodes(self) -> list[RelayNode]:
        async with self._sessions() as s:
            rows = await reachable_nodes(s)
        out = []
        for node in rows:
            vmess = [i for i in node_v2ray_inbounds(node, self.settings.v2ray_port, self.settings.v2ray_vless_port)
                     if i["protocol"] == "vmess"]
            if vmess:
                out.append(RelayNode(node_id=node.uuid, name=node.name, host=node.public_ip,
                                     port=int(vmess[0]["port"]),
                                     uuid=credentials.node_credential(self.secret, node.uuid)))
        return out

    async def sync_once(self) -> bool:
        try:
            changed = await self.relay.sync(await self.nodes())
        except RelayError as exc:
            self.last_error = str(exc)
            log.error("local relay not updated: %s", exc)
            return False
        self.last_error = None
        return changed

    async def run(self) -> None:
        events = self._bus.subscribe(lambda e: e.node_id is not None and e.type in ("create", "update", "delete"), queue_size=100)
        try:
            while True:
                try:
                    await self.sync_once()
                except Exception:
                    log.exception("local relay sync failed")
                try:
                    await asyncio.wait_for(events.get(), self.period)
                    await asyncio.sleep(0.5)  # a burst of node events makes one sync
                    while not events.queue.empty():
                        events.queue.get_nowait()
                except TimeoutError:
                    pass
        finally:
            self._bus.unsubscribe(events)
