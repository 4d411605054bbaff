"""The hub accepting an agent's Hello, on a real SQLite file: no change of desired state is missed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.events import EventBus
from controller.hub.hub import Hub
from controller.models import Node
from controller.services.logs import LogStore
from controller.services.node_state import NodeStateWriter
from controller.services.telemetry import TelemetryIngest
from controller.settings import Settings
from protos import agent_pb2


async def test_a_revision_committed_while_the_hello_is_accepted_is_pushed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    bus = EventBus()
    hub = Hub(Settings(data_dir=tmp_path), sessions, NodeStateWriter(sessions, bus), TelemetryIngest(sessions),
              LogStore(bus, 100))
    try:
        async with sessions() as s:
            s.add(Node(uuid="n1", name="n1", region="local", provider="local", status="running",
                       desired_revision=5))
            await s.commit()
        async with sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == "n1"))  # what Connect read: revision 5
        # Meanwhile an operator's change commits (revision 6); its push ran before the session was registered.
        async with sessions() as s:
            await s.execute(update(Node).where(Node.uuid == "n1").values(desired_revision=6))
            await s.commit()
        await hub.open_session(node, agent_pb2.Hello(node_id="n1", applied_revision=5))
        assert "n1" in hub._dirty  # revision 6 is pushed on the new stream
        hub._dirty.clear()
        await hub.open_session(node, agent_pb2.Hello(node_id="n1", applied_revision=6))
        assert "n1" not in hub._dirty  # an agent that runs the newest revision gets no push
    finally:
        await engine.dispose()
