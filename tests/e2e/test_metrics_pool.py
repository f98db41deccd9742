"""The pool-wait families on a real pool of a real PostgreSQL: every wait for a
connection is observed in yikatong_db_pool_acquire_duration_seconds, one that runs
out also counts in yikatong_db_pool_acquire_timeouts_total and still raises, and a
connection acquired through `engine.db.pool.acquire` goes back to the pool; and an
engine whose pool is exhausted answers 503 overloaded, not database_unavailable."""

from __future__ import annotations

import asyncio
import re

import pytest

from engine.config import DatabaseConfig
from engine.db.embedded import EmbeddedPostgres
from engine.db.pool import PoolExhausted, acquire, create_pool
from engine.metrics import EngineMetrics
from terminals.messages.card import person_info as person_info_msg
from tests.e2e.conftest import deployed
from tests.support import http_get

pytestmark = pytest.mark.slow


def counts(metrics: EngineMetrics) -> tuple[float, float]:
    """(waits observed, waits that timed out)."""
    waits = metrics.registry.get_sample_value("yikatong_db_pool_acquire_duration_seconds_count")
    timeouts = metrics.registry.get_sample_value("yikatong_db_pool_acquire_timeouts_total")
    return waits or 0.0, timeouts or 0.0


async def test_an_exhausted_pool_counts_the_wait_that_timed_out(fresh_dsn: str) -> None:
    metrics = EngineMetrics(lambda: None)
    cfg = DatabaseConfig(url=fresh_dsn, pool_min_size=1, pool_max_size=1)
    pool = await create_pool(fresh_dsn, cfg)
    try:
        async with acquire(pool, timeout_s=5, waits=metrics) as conn:
            assert await conn.fetchval("SELECT 1") == 1
            assert counts(metrics) == (1, 0)
            with pytest.raises(PoolExhausted):  # a TimeoutError, answered 503 overloaded
                async with acquire(pool, timeout_s=0.05, waits=metrics):
                    pass
            assert counts(metrics) == (2, 1)
        assert pool.get_idle_size() == 1  # given back
        async with acquire(pool, timeout_s=5, waits=metrics):
            pass
        assert counts(metrics) == (3, 1)
    finally:
        await pool.close()


def test_an_exhausted_pool_is_answered_overloaded_not_database_unavailable(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One connection, a 1 ms acquire wait and 40 lookups at once: those that find the
    connection busy get 503 overloaded (the database itself is fine),
    the others their answer; the pool's timeouts counter says how many."""
    env = {
        "YIKATONG_DATABASE_POOL_MIN_SIZE": "1",
        "YIKATONG_DATABASE_POOL_MAX_SIZE": "1",
        "YIKATONG_DATABASE_ACQUIRE_TIMEOUT_S": "0.001",
    }
    with deployed(pg_server, tmp_path_factory, engine_env=env) as d:

        async def lookups() -> list[tuple[int, bytes]]:
            async with d.client() as c:
                await c.sign_in()
                certno = d.pop.persons[0].certno
                data = person_info_msg.Data(
                    mdtrt_cert_type="02", mdtrt_cert_no=certno, psn_cert_type="01", certno=certno
                )
                bodies = [
                    c.envelope(await c.msgids.next(), person_info_msg.Input(data=data), "510100")
                    for _ in range(40)
                ]
                return list(await asyncio.gather(*(c.post(b) for b in bodies)))

        answers = asyncio.run(lookups())
        busy = [raw for status, raw in answers if status == 503]
        assert busy, "40 at once on one connection with a 1 ms wait: some must wait it out"
        assert all(b'"yk_result":"overloaded"' in raw for raw in busy)
        assert all(status in (200, 503) for status, _ in answers)
        metrics = http_get(d.engine.url + "/metrics")[2].decode()
        timeouts = re.search(r"^yikatong_db_pool_acquire_timeouts_total (\S+)$", metrics, re.M)
        assert timeouts is not None and float(timeouts.group(1)) >= len(busy)
