"""Finding and measuring the session's real embedded PostgreSQL: the postmaster from a
DSN, and the CPU of backends that connect, work and exit inside the window."""

from __future__ import annotations

import asyncpg
import pytest

from engine.db.embedded import EmbeddedPostgres, running_postmaster
from loadtest.proclookup import PostmasterLookupError, postmaster_pid
from loadtest.procstat import Sampler

pytestmark = pytest.mark.slow

# About a second of backend CPU, whatever the machine: a server-side loop.
BUSY_SQL = "SELECT count(*) FROM generate_series(1, 3000000) AS g WHERE g % 7 = 0"


async def test_postmaster_is_found_from_the_dsn(pg_server: EmbeddedPostgres) -> None:
    pid = await postmaster_pid(pg_server.dsn)
    assert pid is not None
    assert pid == running_postmaster(pg_server.data_dir)


async def test_unreachable_server_is_an_error_not_a_guess() -> None:
    with pytest.raises(PostmasterLookupError, match="cannot connect"):
        await postmaster_pid("postgresql://postgres@/postgres?host=/nonexistent", timeout_s=2)


async def test_cpu_of_backends_that_exit_in_the_window_goes_to_postgres(
    pg_server: EmbeddedPostgres,
) -> None:
    pid = await postmaster_pid(pg_server.dsn)
    assert pid is not None
    sampler = Sampler({"postgres": [pid]})
    sampler.start()
    for _ in range(2):  # each backend exits after its query; the postmaster reaps it
        conn = await asyncpg.connect(pg_server.dsn, timeout=10)
        try:
            await conn.fetchval(BUSY_SQL, timeout=60)
        finally:
            await conn.close()
    sampler.sample()
    report = sampler.stop()
    usage = report.groups["postgres"]
    assert usage.complete
    assert usage.cpu_s is not None and usage.cpu_s > 0.2
    # postmaster, checkpointer, background writer, walwriter, io workers, ...
    assert usage.processes_max >= 4
    assert usage.pss_bytes_max is not None and usage.rss_bytes_max is not None
    assert usage.pss_bytes_max < usage.rss_bytes_max  # shared memory counted once
