"""The audit log's payloads: secrets redacted at any depth, refused bodies as size and error, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from sqlalchemy import func, select

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.edge.audit import MAX_AUDIT_BODY, audit_payload
from controller.models import Operation
from controller.services.operations import OperationLog, redact, scrub

PSK = "q8vQ1r2m3C4pD5eF6gH7iJ8kL9mN0oP1qR2sT3uV4w="


def test_secret_fields_are_redacted_and_the_shape_kept() -> None:
    payload = {"name": "peer", "public_key": "pub=", "preshared_key": PSK, "use_preshared_key": True,
               "reality": {"private_key": "k1", "short_ids": ["ab"]}, "Api-Key": "x", "short_uuid": "s3cr3t",
               "items": [{"token": "t0k3n"}, {"note": "vpf_" + "A" * 43}], "password": None,
               "node_ids": ["7c1e..."], "secret_number": 1234}
    clean, found = redact(payload)
    assert clean == {"name": "peer", "public_key": "pub=", "preshared_key": "***", "use_preshared_key": True,
                     "reality": {"private_key": "***", "short_ids": ["ab"]}, "Api-Key": "***",
                     "short_uuid": "***", "items": [{"token": "***"}, {"note": "***"}], "password": None,
                     "node_ids": ["7c1e..."], "secret_number": "***"}
    assert PSK in found and "s3cr3t" in found
    assert payload["preshared_key"] == PSK  # a copy: the request itself is untouched
    assert scrub(f"invalid field 'preshared_key': {PSK} is not a key", found) == \
        "invalid field 'preshared_key': *** is not a key"


def test_a_900_level_payload_is_redacted_without_recursion() -> None:
    deep: dict = {"private_key": "deep-secret"}
    for _ in range(5000):
        deep = {"x": [deep]}
    clean, found = redact(deep)
    assert found == ["deep-secret"]
    for _ in range(5000):
        clean = clean["x"][0]
    assert clean == {"private_key": "***"}


def test_refused_malformed_deep_and_large_bodies_are_size_and_error() -> None:
    assert audit_payload(b'{"a": 1}', 8) == {"a": 1} and audit_payload(b"", 0) is None
    assert audit_payload(b"{}", 2, {"size": 5, "error": "nested"}) == {"_size": 5, "_error": "nested"}
    bad = b'{"private_key": "leaked'
    assert audit_payload(bad, len(bad)) == {"_size": len(bad), "_error": "not valid JSON: Unterminated string "
                                                                         "starting at"}
    deep = b"[" * 900 + b"]" * 900
    assert audit_payload(deep, len(deep))["_error"].startswith("request body is nested too deeply")
    assert audit_payload(b"x" * MAX_AUDIT_BODY, MAX_AUDIT_BODY + 5)["_size"] == MAX_AUDIT_BODY + 5
    assert set(audit_payload(b'{"a": "\\u0000"}', 15)) == {"_size", "_error"}


async def test_retention_prunes_old_operations(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await prepare_database(engine)
    sessions = make_sessionmaker(engine)
    log = OperationLog(sessions)
    now = dt.datetime.now(dt.timezone.utc)
    async with sessions() as s:
        for age_days in (0, 10, 364, 366, 400, 5000):
            s.add(Operation(actor="admin", action="POST /x", payload={"private_key": "***"}, result="success",
                            status_code=200, request_id="r", created_at=now - dt.timedelta(days=age_days)))
        await s.commit()
    await log.record(actor="admin", action="POST /y", target_type=None, target_id=None,
                     payload={"preshared_key": PSK}, status_code=422, error=f"bad key {PSK}", request_id="r2")
    assert await log.prune(0) == 0  # 0 keeps everything
    assert await log.prune(365) == 3
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Operation)) == 4
        row = await s.scalar(select(Operation).where(Operation.request_id == "r2"))
        assert row is not None and row.payload == {"preshared_key": "***"} and PSK not in (row.error or "")
    # the schedule's coroutine prunes at once, then sleeps
    async with sessions() as s:
        s.add(Operation(actor="admin", action="POST /x", result="success", status_code=200, request_id="old",
                        created_at=now - dt.timedelta(days=30)))
        await s.commit()
    task = asyncio.create_task(log.run_retention(7, period=3600))
    await asyncio.sleep(0.5)
    task.cancel()
    async with sessions() as s:  # ages 10, 30 and 364 days went; today's two stay
        assert await s.scalar(select(func.count()).select_from(Operation)) == 2
    await engine.dispose()
