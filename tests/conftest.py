"""Shared fixtures: uvloop for async tests, a session-wide embedded PostgreSQL server
(real, not mocked) and a fresh database in it per test that asks for one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import uvloop

from engine.db.embedded import EmbeddedPostgres
from tests.support import postgres_pids_for


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One real embedded PostgreSQL for the whole session, stopped at the end."""
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pg") / "data",
        start_timeout_s=60,
        stop_timeout_s=30,
        max_connections=200,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
    assert postgres_pids_for(server.data_dir) == [], "session postgres left running"


@pytest.fixture
async def fresh_dsn(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A DSN of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server.dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_server.dsn.replace("/postgres?", f"/{name}?")
    admin = await asyncpg.connect(pg_server.dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A path for an engine-owned embedded database (created by the engine)."""
    return tmp_path / "pg"
