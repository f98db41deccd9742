"""The engine process: start everything in order, serve, and stop in reverse order.

Start: signal handlers first (so a SIGTERM during start still ends in a clean stop),
then the database (embedded or URL), the pool, the schema check or migration, the
instance record, and finally the listening socket. Stop, on SIGTERM or SIGINT: close
the listening socket, let in-flight requests finish within `server.shutdown_grace_s`,
close the pool, stop the embedded database. Every exit path, including a failed start,
runs the stop steps of whatever had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid

import asyncpg
from aiohttp import web

from engine import __version__, card_purge, constants, ledger_seal, nonces
from engine.app import EngineState, build_app
from engine.config import Config
from engine.db import migrate
from engine.db.lifecycle import database_dsn
from engine.db.pool import acquire, create_pool
from engine.hsm_runtime import open_hsm
from engine.http_tx import TxEndpoint
from engine.metrics import EngineMetrics
from engine.txn.card.services import CardAuthServices, CardKeyLabels
from engine.txn.routes import build_routes
from hsm.protocol import Hsm, KeyRef
from settlement.policy import PolicyBook

log = logging.getLogger("engine.server")


async def prepare_schema(conn: asyncpg.Connection, cfg: Config) -> None:
    """Migrate (or, with migrate_on_start off, only check) the schema."""
    migrations = migrate.packaged_migrations()
    timeout_s = cfg.database.command_timeout_s
    if cfg.database.migrate_on_start:
        applied = await migrate.migrate(conn, migrations, timeout_s)
        for m in applied:
            log.info("applied migration", extra={"fields": {"version": m.version, "name": m.name}})
        return
    status = await migrate.migration_status(conn, migrations, timeout_s)
    migrate.check_usable(status)
    if status.pending:
        raise migrate.MigrationError(
            f"{len(status.pending)} migration(s) pending and database.migrate_on_start is"
            " off; run `yikatong db migrate`"
        )


async def _record_start(pool: asyncpg.Pool, instance_id: uuid.UUID, timeout_s: float) -> None:
    await pool.execute(
        "INSERT INTO engine_instances (instance_id, version, hostname, pid) VALUES ($1,$2,$3,$4)",
        instance_id,
        __version__,
        socket.gethostname()[:255] or "unknown",
        os.getpid(),
        timeout=timeout_s,
    )


async def _record_stop(pool: asyncpg.Pool, instance_id: uuid.UUID, timeout_s: float) -> None:
    try:
        await pool.execute(
            "UPDATE engine_instances SET stopped_at = now() WHERE instance_id = $1",
            instance_id,
            timeout=timeout_s,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.warning("could not record the stop", extra={"fields": {"error": str(exc)}})


async def _seal_forever(
    pool: asyncpg.Pool, cfg: Config, stop: asyncio.Event, metrics: EngineMetrics
) -> None:
    """Seal finished journal entries every `ledger.seal_interval_s` until stop, and
    report what is left to seal to the metrics (their ledger gauges change only here:
    a scrape never waits on the database); a failed run (database away) is logged and
    retried at the next interval, the gauges keeping the last run's values."""
    timeout_s = cfg.database.command_timeout_s
    while not stop.is_set():
        try:
            async with acquire(
                pool, timeout_s=cfg.database.acquire_timeout_s, waits=metrics
            ) as conn:
                count = await ledger_seal.seal(
                    conn, batch_max=cfg.ledger.seal_batch_max, timeout_s=timeout_s
                )
                left = await ledger_seal.backlog(conn, timeout_s=timeout_s)
                metrics.ledger_backlog(left.entries, left.oldest_age_s, sealed_at_s=time.time())
                count += await nonces.purge_expired(
                    conn, batch_max=cfg.card.purge_batch_max, timeout_s=timeout_s
                )
            if count:
                log.debug("sealed journal entries", extra={"fields": {"count": count}})
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("sealing the journal failed", extra={"fields": {"error": repr(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.ledger.seal_interval_s)


async def _purge_card_auth_forever(
    pool: asyncpg.Pool, cfg: Config, stop: asyncio.Event, metrics: EngineMetrics
) -> None:
    """Delete expired card challenges, burned e-card token ids and request nonces every
    `card.purge_interval_s`, at most `card.purge_batch_max` challenges and tokens per
    run (nonces until none has expired); a failed run is logged and retried at the next
    interval."""
    while not stop.is_set():
        try:
            async with acquire(
                pool, timeout_s=cfg.database.acquire_timeout_s, waits=metrics
            ) as conn:
                count = await card_purge.purge_expired(
                    conn,
                    batch_max=cfg.card.purge_batch_max,
                    grace_s=constants.CARD_AUTH_PURGE_GRACE_S,
                    timeout_s=cfg.database.command_timeout_s,
                )
                count += await nonces.purge_expired(
                    conn,
                    batch_max=cfg.card.purge_batch_max,
                    timeout_s=cfg.database.command_timeout_s,
                )
            if count:
                log.debug(
                    "purged expired card challenges and tokens", extra={"fields": {"count": count}}
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("purging card challenges failed", extra={"fields": {"error": repr(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.card.purge_interval_s)


async def serve(cfg: Config) -> None:
    """Run the engine until SIGTERM or SIGINT. Raises on a failed start."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("stop requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    hsm = await open_hsm(cfg.hsm)  # before anything starts: a bad key file stops us here
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with database_dsn(cfg) as dsn:
            if stop.is_set():
                return
            await _serve_with_database(cfg, dsn, stop, started, hsm)
    finally:
        await hsm.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve_with_database(
    cfg: Config, dsn: str, stop: asyncio.Event, started: float, hsm: Hsm
) -> None:
    def current_pool() -> asyncpg.Pool | None:
        return state.pool

    state = EngineState(config=cfg, metrics=EngineMetrics(current_pool), hsm=hsm)
    pool = await create_pool(dsn, cfg.database)
    instance_id = uuid.uuid4()
    timeout_s = cfg.database.command_timeout_s
    runner: web.AppRunner | None = None
    recorded = False
    try:
        async with pool.acquire(timeout=cfg.database.acquire_timeout_s) as conn:
            await prepare_schema(conn, cfg)
        await _record_start(pool, instance_id, timeout_s)
        recorded = True
        state.pool = pool
        state.tx = TxEndpoint(
            registry=build_routes(),
            services=CardAuthServices(
                policies=PolicyBook(),
                command_timeout_s=timeout_s,
                hsm=hsm,
                hsm_deadline_s=cfg.hsm.deadline_s,
                keys=CardKeyLabels(
                    int_3des=KeyRef(cfg.hsm.card_int_3des),
                    int_sm4=KeyRef(cfg.hsm.card_int_sm4),
                    ext_3des=KeyRef(cfg.hsm.card_ext_3des),
                    ext_sm4=KeyRef(cfg.hsm.card_ext_sm4),
                    ecard_sign=KeyRef(cfg.hsm.ecard_sign),
                ),
                metrics=state.metrics,
            ),
            metrics=state.metrics,
            get_pool=lambda: state.pool,
            hsm=hsm,
            terminal_mac_master=KeyRef(cfg.hsm.terminal_mac_master),
            hsm_deadline_s=cfg.hsm.deadline_s,
            request_budget_s=cfg.server.request_timeout_s,
            acquire_timeout_s=cfg.database.acquire_timeout_s,
        )
        runner = web.AppRunner(
            build_app(state),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=cfg.server.shutdown_grace_s,
        )
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port)
        await site.start()
        log.info(
            "engine ready",
            extra={
                "fields": {
                    "addresses": [f"http://{a[0]}:{a[1]}" for a in runner.addresses],
                    "version": __version__,
                    "embedded_database": cfg.embedded_database,
                    "start_ms": round((time.monotonic() - started) * 1000),
                }
            },
        )
        sealer = asyncio.create_task(_seal_forever(pool, cfg, stop, state.metrics))
        purger = asyncio.create_task(_purge_card_auth_forever(pool, cfg, stop, state.metrics))
        await stop.wait()
        await sealer
        await purger
        log.info("shutting down", extra={"fields": {"grace_s": cfg.server.shutdown_grace_s}})
        state.shutting_down = True
    finally:
        if runner is not None:
            await runner.cleanup()
        if recorded:
            await _record_stop(pool, instance_id, timeout_s)
        state.pool = None
        try:
            await asyncio.wait_for(pool.close(), cfg.server.shutdown_grace_s)
        except TimeoutError:
            log.warning("pool did not close in time; terminating its connections")
            pool.terminate()
    log.info("engine stopped")
