"""Where the database is for this process: the configured URL, or the embedded server
started (and later stopped) around the caller's work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from engine import constants
from engine.config import Config
from engine.db.embedded import EmbeddedPostgres, EmbeddedState, bin_dir

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def database_dsn(cfg: Config) -> AsyncIterator[str]:
    """Yield a DSN; when no URL is configured, run the embedded server meanwhile.

    The blocking start runs in a worker thread so that the event loop keeps taking
    signals; if the caller is cancelled mid-start, the start is awaited to its end and
    the server stopped again, so no postgres is ever left behind."""
    if cfg.database.url:
        yield cfg.database.url
        return
    db = cfg.database
    embedded = EmbeddedPostgres(
        Path(db.embedded_data_dir),
        start_timeout_s=db.embedded_start_timeout_s,
        stop_timeout_s=db.embedded_stop_timeout_s,
        max_connections=db.embedded_max_connections,
    )
    if os.geteuid() == 0:
        log.warning(
            "running as root: embedded PostgreSQL runs as system user %s, and the parent"
            " directories of its data and binaries were made world-traversable (g+rx,o+rx)",
            constants.EMBEDDED_PG_SYSTEM_USER,
            extra={"fields": {"data_dir": str(embedded.data_dir), "bin_dir": str(bin_dir())}},
        )
    start = asyncio.ensure_future(asyncio.to_thread(embedded.start))
    try:
        state = await asyncio.shield(start)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await start
        await asyncio.to_thread(embedded.stop)
        raise
    log.info(
        "embedded postgres %s",
        "started" if state is EmbeddedState.owned else "attached (owned by another process)",
        extra={"fields": {"data_dir": str(embedded.data_dir)}},
    )
    try:
        yield embedded.dsn
    finally:
        await asyncio.to_thread(embedded.stop)
        if state is EmbeddedState.owned:
            log.info("embedded postgres stopped")
