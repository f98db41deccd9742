"""`yikatong seed` loads the same population for the same seed, refuses a database
that is not migrated or already populated, and leaves the ledger balanced."""

from __future__ import annotations

import subprocess
import sys

import asyncpg

from engine.db import migrate


def run(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_seed_refuses_unmigrated_then_loads_then_refuses_a_second_time(
    fresh_dsn: str,
) -> None:
    first = run("seed", "--persons", "300", "--seed", "11", dsn=fresh_dsn)
    assert first.returncode != 0 and "not migrated" in first.stderr
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate.migrate(conn, migrate.packaged_migrations(), timeout_s=30)
        loaded = run("seed", "--persons", "300", "--seed", "11", dsn=fresh_dsn)
        assert loaded.returncode == 0, loaded.stderr
        assert "seeded 300 persons" in loaded.stdout
        certnos = await conn.fetchval("SELECT count(DISTINCT certno) FROM persons")
        assert certnos == 300
        again = run("seed", "--persons", "300", "--seed", "11", dsn=fresh_dsn)
        assert again.returncode != 0 and "already holds persons" in again.stderr
    finally:
        await conn.close()
    checked = run("ledger", "check", dsn=fresh_dsn)
    assert checked.returncode == 0 and "ledger balanced" in checked.stdout


def test_same_seed_same_population() -> None:
    from simulators.population import generate

    a, b = generate(5, 200), generate(5, 200)
    assert a.persons == b.persons and a.institutions == b.institutions and a.catalog == b.catalog
    assert generate(6, 200).persons != a.persons
