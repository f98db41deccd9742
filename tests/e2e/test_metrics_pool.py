"""The pool-wait families on a real pool of a real PostgreSQL: every wait for a
connection is observed in yikatong_db_pool_acquire_duration_seconds, one that runs
out also counts in yikatong_db_pool_acquire_timeouts_total and still raises, and a
connection acquired through `engine.db.pool.acquire` goes back to the pool."""

from __future__ import annotations

import pytest

from engine.config import DatabaseConfig
from engine.db.pool import acquire, create_pool
from engine.metrics import EngineMetrics

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
            with pytest.raises(TimeoutError):
                async with acquire(pool, timeout_s=0.05, waits=metrics):
                    pass
            assert counts(metrics) == (2, 1)
        assert pool.get_idle_size() == 1  # given back
        async with acquire(pool, timeout_s=5, waits=metrics):
            pass
        assert counts(metrics) == (3, 1)
    finally:
        await pool.close()
