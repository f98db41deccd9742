"""The engine a load run measures: one started here on a fresh embedded database (the
newcomer's way), or one already running (`--url`, and `--database-url` for the
baseline, the CPU of PostgreSQL and a person sample of any size)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from engine.db.embedded import dsn_for
from loadtest import cpu as cpu_sampling
from loadtest import metrics_delta
from loadtest.world import World, from_database, from_seed
from simulators.keys import terminal_keys_from_env
from simulators.rig import EngineRig

HOSPITALS_MIN = 20
VACUUM_TIMEOUT_S = 1800.0
PHARMACIES = 10


@dataclass(frozen=True)
class Target:
    url: str
    dsn: str  # "" when unknown (no --database-url)
    engine_pids: list[int]
    pool_size: int | None


async def _vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        await conn.execute("VACUUM (ANALYZE)", timeout=VACUUM_TIMEOUT_S)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def own_engine(
    args: argparse.Namespace, directory: Path
) -> AsyncIterator[tuple[Target, World]]:
    rig = EngineRig(directory, {"YIKATONG_DATABASE_POOL_MAX_SIZE": str(args.engine_pool)})
    print(f"engine: new embedded database in {rig.data_dir}; log {rig.log_path}")
    await asyncio.to_thread(rig.init_keys)
    try:
        ready_s = await asyncio.to_thread(rig.start)
        print(f"engine: ready on {rig.url} after {ready_s:.1f}s; seeding {args.persons} persons")
        hospitals = max(HOSPITALS_MIN, args.terminals)
        line = await asyncio.to_thread(
            rig.seed, args.persons, args.seed, "--hospitals", str(hospitals)
        )
        print(f"engine: {line}")
        # Seal the seed's opening entries now, so the engine's background sealer does
        # not hash them during the measured window.
        sealed = await asyncio.to_thread(rig.cli, "ledger", "seal")
        if sealed.returncode != 0:
            raise RuntimeError(f"ledger seal failed: {sealed.stderr.strip()[-500:]}")
        dsn = dsn_for(rig.data_dir)
        # And vacuum it: otherwise autovacuum works through the freshly seeded tables
        # during the measurement (at 10^7 persons it doubled p99).
        await _vacuum(dsn)
        keys = terminal_keys_from_env(rig.env)
        world = await from_database(dsn, keys, args.terminals, args.sample_persons, args.seed)
        pid = rig.proc.pid if rig.proc is not None else 0
        yield Target(rig.url, dsn, [pid], args.engine_pool), world
    except BaseException:
        rig.kill()
        raise
    code = await asyncio.to_thread(rig.stop)
    left = rig.database_left_running()
    print(
        f"engine: stopped with exit status {code}"
        + ("; ITS POSTGRES IS STILL RUNNING" if left else "; embedded postgres stopped")
    )


@contextlib.asynccontextmanager
async def running_engine(args: argparse.Namespace) -> AsyncIterator[tuple[Target, World]]:
    keys = terminal_keys_from_env()
    dsn = args.database_url or ""
    if dsn:
        world = await from_database(dsn, keys, args.terminals, args.sample_persons, args.seed)
    else:
        world = await asyncio.to_thread(
            from_seed,
            args.seed,
            args.persons,
            keys,
            args.terminals,
            hospitals=args.hospitals,
            pharmacies=PHARMACIES,
        )
    pool = await metrics_delta.pool_max_size(args.url)
    yield Target(args.url, dsn, cpu_sampling.engine_pids(args.url), pool), world
