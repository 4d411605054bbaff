"""Migration 0009: integer ids are never reused after a delete, on a new database and on an upgraded one
(whose rows, indexes and foreign keys all survive the rebuild, cascading children included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from controller.db import make_engine, prepare_database
from controller.migrations import alembic_config

TABLES = ("nodes", "enrollment_tokens", "api_keys", "wireguard_servers", "wireguard_clients", "ipv6_pools",
          "ipv6_allocations")
#: tables whose rows a careless rebuild of a parent would cascade away
CHILDREN = ("metric_buckets", "wireguard_usage")


def _filler(column: dict[str, Any]) -> Any:
    kind = column["type"]
    if isinstance(kind, (sa.Integer, sa.Boolean, sa.Float, sa.Numeric)):
        return 0
    if isinstance(kind, sa.DateTime):
        return "2026-11-01 00:00:00.000000"
    if isinstance(kind, sa.JSON):
        return "[]"
    return "x"


def _insert(conn: Connection, table: str, **values: Any) -> int:
    """A row with ``values`` and a plain value in every other NOT NULL column; its rowid."""
    for column in sa.inspect(conn).get_columns(table):
        if column["name"] not in values and not column["nullable"] and column["default"] is None \
                and not (column.get("primary_key") or column["name"] == "id"):
            values[column["name"]] = _filler(column)
    names = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    return conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values).lastrowid


def _schema(conn: Connection) -> dict[str, Any]:
    insp = sa.inspect(conn)
    return {t: (sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
                sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                        f["options"].get("ondelete")) for f in insp.get_foreign_keys(t)),
                [c["name"] for c in insp.get_columns(t)])
            for t in (*TABLES, *CHILDREN)}


def _dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1, 2"))]
            for t in (*TABLES, *CHILDREN)}


def _fill(conn: Connection) -> None:
    """A node with a token, a metric bucket and a WireGuard server, client and usage; an API key; an IPv6 pool
    and allocation; then the newest of each integer-id row deleted (so a table without AUTOINCREMENT would
    hand out its id again)."""
    for n in (1, 2):
        uuid = f"00000000-0000-0000-0000-00000000000{n}"
        _insert(conn, "nodes", uuid=uuid, name=f"n{n}", region="local", provider="local", status="running")
        _insert(conn, "enrollment_tokens", node_uuid=uuid, token_hash=f"h{n}")
        _insert(conn, "metric_buckets", node_uuid=uuid, bucket_start="2026-11-01 00:00:00.000000")
        _insert(conn, "api_keys", name=f"k{n}", key_hash=f"kh{n}")
        server = _insert(conn, "wireguard_servers", node_uuid=uuid, name="wg", interface="wg0", listen_port=51820,
                         ipv4_address=f"10.{n}.0.1/24")
        client = _insert(conn, "wireguard_clients", server_id=server, name="c", public_key=f"pk{n}",
                         ipv4_address=f"10.{n}.0.2/32")
        _insert(conn, "wireguard_usage", client_id=client, hour_start="2026-11-01 00:00:00.000000", rx_bytes=n)
        pool = _insert(conn, "ipv6_pools", name=f"p{n}", prefix=f"2001:db8:{n}::/48", prefix_length=64)
        _insert(conn, "ipv6_allocations", pool_id=pool, prefix=f"2001:db8:{n}::/64")
    # the newest of every table goes; its children with it
    conn.execute(sa.text("DELETE FROM wireguard_clients WHERE id = 2"))
    conn.execute(sa.text("DELETE FROM ipv6_allocations WHERE id = 2"))
    conn.execute(sa.text("DELETE FROM enrollment_tokens WHERE id = 2"))
    conn.execute(sa.text("DELETE FROM api_keys WHERE id = 2"))


def _next_ids_are_new(conn: Connection, deleted: dict[str, int]) -> None:
    """Each table's next id is above the highest it ever handed out, not the deleted one again."""
    for table, highest in deleted.items():
        conn.execute(sa.text(f"DELETE FROM {table} WHERE id = {highest}"))
    got = {
        "wireguard_servers": _insert(conn, "wireguard_servers", node_uuid="00000000-0000-0000-0000-000000000001",
                                     name="wg", interface="wg9", listen_port=51829),
        "ipv6_pools": _insert(conn, "ipv6_pools", name="p9", prefix="2001:db8:9::/48", prefix_length=64),
        "api_keys": _insert(conn, "api_keys", name="k9", key_hash="kh9"),
        "nodes": _insert(conn, "nodes", uuid="00000000-0000-0000-0000-000000000009", name="n9", region="local",
                         provider="local", status="running"),
    }
    for table, new_id in got.items():
        assert new_id > deleted[table], (table, new_id, deleted[table])


async def test_new_database_never_reuses_ids(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    await prepare_database(engine)
    async with engine.begin() as conn:
        sql = dict((await conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'"))).all())
        for table in TABLES:
            assert "AUTOINCREMENT" in sql[table], table

        def create_delete_create(sync: Connection) -> None:
            _fill(sync)
            _next_ids_are_new(sync, {"wireguard_servers": 2, "ipv6_pools": 2, "api_keys": 1, "nodes": 2})
        await conn.run_sync(create_delete_create)
    await engine.dispose()


async def test_upgrade_keeps_rows_indexes_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0008"))
        sql = dict((await conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'"))).all())
        assert "AUTOINCREMENT" not in sql["wireguard_servers"]  # the old schema, as shipped
        await conn.run_sync(_fill)
        before_rows = await conn.run_sync(_dump)
        before_schema = await conn.run_sync(_schema)
    assert len(before_rows["wireguard_usage"]) == 1 and len(before_rows["metric_buckets"]) == 2

    # upgrade as the controller does at start: a new connection (foreign keys on), one transaction; to 0009
    # itself, so later migrations' columns do not show in the comparison
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0009"))
        assert (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar() == 1
        assert await conn.run_sync(_dump) == before_rows  # cascading children included
        assert await conn.run_sync(_schema) == before_schema
        sql = dict((await conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'"))).all())
        for table in TABLES:
            assert "AUTOINCREMENT" in sql[table], table
        assert (await conn.execute(sa.text("PRAGMA foreign_key_check"))).all() == []
        # the foreign keys still act: deleting a server takes its client and the client's usage
        await conn.execute(sa.text("DELETE FROM wireguard_servers WHERE id = 1"))
        assert (await conn.execute(sa.text("SELECT count(*) FROM wireguard_usage"))).scalar() == 0
        await conn.run_sync(lambda c: _next_ids_are_new(
            c, {"wireguard_servers": 2, "ipv6_pools": 2, "api_keys": 1, "nodes": 2}))
    await prepare_database(engine)  # and on to the head
    await engine.dispose()


async def test_downgrade_keeps_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'down.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0009"))
        await conn.run_sync(_fill)
        before = await conn.run_sync(_dump)
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0008"))
        assert await conn.run_sync(_dump) == before
        sql = dict((await conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'"))).all())
        assert "AUTOINCREMENT" not in sql["wireguard_servers"]
    await engine.dispose()
