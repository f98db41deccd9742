"""Migrations against a real PostgreSQL: order, one transaction each, idempotence,
serialised concurrent migrators, and refusal of a schema newer than the build."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.db import migrate
from engine.db.migrate import MigrationError, SchemaTooNewError, load_migrations

THREE = load_migrations(
    [
        ("0001_create_t.sql", "CREATE TABLE t (id int PRIMARY KEY, note text)"),
        ("0002_add_column.sql", "ALTER TABLE t ADD COLUMN amount_fen bigint NOT NULL DEFAULT 0"),
        ("0003_seed.sql", "INSERT INTO t (id, note) VALUES (1, 'after 0002')"),
    ]
)


async def versions(conn: asyncpg.Connection) -> list[int]:
    return [
        r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
    ]


async def test_applies_in_order_and_records_each(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        applied = await migrate.migrate(conn, THREE, timeout_s=10)
        assert [m.version for m in applied] == [1, 2, 3]
        assert await versions(conn) == [1, 2, 3]
        # 0003 could only succeed after 0002 added the column it relies on.
        assert await conn.fetchval("SELECT amount_fen FROM t WHERE id = 1") == 0
    finally:
        await conn.close()


async def test_applying_twice_changes_nothing(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate.migrate(conn, THREE, timeout_s=10)
        before = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert await migrate.migrate(conn, THREE, timeout_s=10) == []
        assert await conn.fetch("SELECT * FROM schema_migrations ORDER BY version") == before
        assert await conn.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await conn.close()


async def test_new_migrations_apply_on_top(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate.migrate(conn, THREE[:1], timeout_s=10)
        applied = await migrate.migrate(conn, THREE, timeout_s=10)
        assert [m.version for m in applied] == [2, 3]
    finally:
        await conn.close()


async def test_failing_migration_leaves_no_trace(fresh_dsn: str) -> None:
    """Each migration runs in its own transaction with its record: a failure in the
    middle of 0002 keeps 0001, and nothing of 0002 (neither table nor record)."""
    broken = load_migrations(
        [
            ("0001_create_t.sql", "CREATE TABLE t (id int PRIMARY KEY)"),
            ("0002_half.sql", "CREATE TABLE u (id int); SELECT 1/0"),
        ]
    )
    conn = await asyncpg.connect(fresh_dsn)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate.migrate(conn, broken, timeout_s=10)
        assert await versions(conn) == [1]
        assert await conn.fetchval("SELECT to_regclass('u')") is None
    finally:
        await conn.close()


async def test_schema_newer_than_build_is_refused(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate.migrate(conn, THREE, timeout_s=10)
        with pytest.raises(SchemaTooNewError, match="version 0003, newer than this engine knows"):
            await migrate.migrate(conn, THREE[:2], timeout_s=10)
        status = await migrate.migration_status(conn, THREE[:2], timeout_s=10)
        assert [u.version for u in status.unknown] == [3]
    finally:
        await conn.close()


async def test_edited_migration_is_refused(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate.migrate(conn, THREE[:1], timeout_s=10)
        edited = load_migrations([("0001_create_t.sql", "CREATE TABLE t (id bigint)")])
        with pytest.raises(MigrationError, match="0001 changed after being applied"):
            await migrate.migrate(conn, edited, timeout_s=10)
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_migration_once(fresh_dsn: str) -> None:
    conns = [await asyncpg.connect(fresh_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.migrate(c, THREE, timeout_s=10) for c in conns))
        assert sorted(m.version for r in results for m in r) == [1, 2, 3]
        assert await versions(conns[0]) == [1, 2, 3]
    finally:
        for c in conns:
            await c.close()


async def test_packaged_migrations_apply_to_an_empty_database(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        shipped = migrate.packaged_migrations()
        await migrate.migrate(conn, shipped, timeout_s=10)
        status = await migrate.migration_status(conn, shipped, timeout_s=10)
        assert status.pending == [] and status.unknown == [] and status.modified == []
        assert status.current_version == status.latest_known
    finally:
        await conn.close()
