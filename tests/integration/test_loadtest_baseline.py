"""The pgbench baseline, for real: the wheel's pgbench against the session's embedded
PostgreSQL over its Unix socket (the `?host=<socket dir>` DSN form), briefly."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from engine.db.embedded import EmbeddedPostgres
from loadtest.baseline import BaselineError, drop_database, run_baseline

pytestmark = pytest.mark.slow


async def _databases(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database", timeout=10)
    finally:
        await conn.close()
    return {row["datname"] for row in rows}


async def test_short_tpcb_run_reports_tps_and_drops_its_database(
    pg_server: EmbeddedPostgres,
) -> None:
    run = await run_baseline(
        pg_server.dsn, clients=2, duration_s=2, scale=1, database="yikatong_pgbench_t1"
    )
    result = run.result
    assert result.tps > 0
    assert result.transactions > 0
    assert result.transactions_failed == 0
    assert (result.clients, result.threads, result.duration_s) == (2, 2, 2)
    assert result.scaling_factor == 1
    assert result.query_mode == "prepared"
    assert result.transaction_type == "<builtin: TPC-B (sort of)>"
    assert result.server_version is None  # the wheel's pgbench and server are one release
    assert result.latency_ms_stddev is not None  # -P 1 is on by default
    assert len(result.progress) >= 1
    assert "yikatong_pgbench_t1" not in await _databases(pg_server.dsn)


async def test_keep_database_leaves_the_loaded_tables(pg_server: EmbeddedPostgres) -> None:
    name = "yikatong_pgbench_t2"
    # With a password in the URI (trust auth ignores it): it travels as PGPASSWORD.
    with_password = pg_server.dsn.replace("//postgres@", "//postgres:s3cret@")
    assert with_password != pg_server.dsn
    run = await run_baseline(
        with_password, clients=1, duration_s=1, scale=1, database=name, keep_database=True
    )
    assert run.database_kept
    assert all("s3cret" not in arg for arg in run.run_argv + run.init_argv)
    try:
        conn = await asyncpg.connect(pg_server.dsn.replace("/postgres?", f"/{name}?"), timeout=10)
        try:
            branches = await conn.fetchval("SELECT count(*) FROM pgbench_branches", timeout=10)
        finally:
            await conn.close()
        assert branches == 1
    finally:
        await drop_database(pg_server.dsn, name)
    assert name not in await _databases(pg_server.dsn)


async def test_failing_pgbench_is_an_error_and_the_database_is_dropped_all_the_same(
    pg_server: EmbeddedPostgres,
) -> None:
    name = "yikatong_pgbench_t3"
    with pytest.raises(BaselineError, match="exited with status 1"):
        await run_baseline(
            pg_server.dsn, duration_s=1, scale=1, database=name, pgbench=Path("/bin/false")
        )
    assert name not in await _databases(pg_server.dsn)
