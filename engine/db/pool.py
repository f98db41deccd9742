"""The asyncpg connection pool with every size and timeout set explicitly from the
config, `acquire` that reports each wait for a connection (the metrics' pool wait and
timeouts), and the readiness probe that `/readyz` uses. Its connections count their
round trips to PostgreSQL (engine.db.round_trips)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg

from engine.config import DatabaseConfig
from engine.db.round_trips import CountingConnection


class DatabaseUnavailableError(Exception):
    """The database did not answer in time or refused the connection."""


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook that skips asyncpg's reset query (advisory unlocks, CLOSE ALL,
    UNLISTEN, RESET ALL): the engine sets no session state on pooled connections, so
    the reset is a wasted round trip per request. Code that takes a session-level
    advisory lock releases it itself (engine.db.migrate)."""


async def _check_session(conn: asyncpg.Connection) -> None:
    """Each new connection: the transaction core sends a write's document as a string
    literal (engine.txn.db.sql_string_literal), which is only safe while backslashes
    are ordinary characters in literals."""
    if await conn.fetchval("SHOW standard_conforming_strings") != "on":
        raise DatabaseUnavailableError("standard_conforming_strings must be on")


async def create_pool(dsn: str, cfg: DatabaseConfig) -> asyncpg.Pool:
    """Open the pool; its `min_size` connections are made now, under one deadline."""
    try:
        async with asyncio.timeout(cfg.connect_timeout_s * 2):
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn,
                min_size=cfg.pool_min_size,
                max_size=cfg.pool_max_size,
                max_inactive_connection_lifetime=cfg.max_inactive_connection_lifetime_s,
                timeout=cfg.connect_timeout_s,
                command_timeout=cfg.command_timeout_s,
                reset=_keep_session,
                init=_check_session,
                connection_class=CountingConnection,
            )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailableError(f"cannot open the database pool: {exc}") from exc
    return pool


class PoolExhausted(TimeoutError):
    """No pool connection came free within the wait: the database answers, but every
    connection is busy (answered 503 overloaded, not database_unavailable)."""


class PoolWaits(Protocol):
    """Who hears of each wait for a connection (engine.metrics.EngineMetrics)."""

    def pool_waited(self, waited_s: float, *, timed_out: bool) -> None: ...


@contextlib.asynccontextmanager
async def acquire(
    pool: asyncpg.Pool, *, timeout_s: float, waits: PoolWaits
) -> AsyncIterator[asyncpg.Connection]:
    """`pool.acquire(timeout=timeout_s)` that reports to `waits` how long it waited and
    whether the wait ran out (raised as PoolExhausted, a TimeoutError); the connection
    goes back to the pool when the block ends, as with asyncpg's own context manager."""
    started = time.perf_counter()
    timed_out = False
    try:
        conn = await pool.acquire(timeout=timeout_s)
    except TimeoutError as exc:
        timed_out = True
        raise PoolExhausted(f"no pool connection free within {timeout_s:g}s") from exc
    finally:
        waits.pool_waited(time.perf_counter() - started, timed_out=timed_out)
    try:
        yield conn
    finally:
        await pool.release(conn)


async def probe(pool: asyncpg.Pool, cfg: DatabaseConfig) -> float:
    """Run `SELECT 1` within `ready_timeout_s`; return the elapsed seconds.

    After a database restart the pool's idle connections are dead; the first query on
    one fails and asyncpg discards it, so a failure on a lost connection is retried
    once on a fresh one while the deadline allows."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(cfg.ready_timeout_s):
            for attempt in (1, 2):
                try:
                    async with pool.acquire() as conn:
                        await conn.fetchval("SELECT 1")
                    break
                except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError):
                    if attempt == 2:
                        raise
    except TimeoutError as exc:
        raise DatabaseUnavailableError(
            f"database did not answer within {cfg.ready_timeout_s}s"
        ) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise DatabaseUnavailableError(f"database unavailable: {reason}") from exc
    return time.monotonic() - started
