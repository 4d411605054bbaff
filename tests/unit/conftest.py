"""Fixtures shared by the unit tests that run against both database backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the module (skipped where NO_POSTGRES)."""
    pg = PostgresServer().start()
    try:
        yield pg
    finally:
        pg.stop()
