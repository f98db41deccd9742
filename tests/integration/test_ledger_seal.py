"""The journal's per-region hash chains: entries are sealed only once no older
transaction can still add an entry before them, and `yikatong ledger verify` detects
an entry or posting changed after sealing."""

from __future__ import annotations

import subprocess
import sys

import asyncpg

from engine.db import migrate
from engine.ledger_seal import seal, verify
from simulators.population import generate, load


async def prepared(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await migrate.migrate(conn, migrate.packaged_migrations(), timeout_s=30)
    await load(conn, generate(3, 60, hospitals=2, pharmacies=1, items=10))
    return conn


async def add_entry(conn: asyncpg.Connection, region: str, amount: int) -> int:
    entry: int = await conn.fetchval(
        "INSERT INTO journal_entries (kind, insuplc_admdvs) VALUES ('opening', $1) RETURNING entry_id",
        region,
    )
    await conn.execute(
        "INSERT INTO postings (entry_id, account, amount_fen) VALUES ($1, $2, $3), ($1, $4, $5)",
        entry,
        f"contrib:{region}:310",
        amount,
        f"fund:{region}:310",
        -amount,
    )
    return entry


def ledger_verify(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "ledger", "verify"],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def sealed_ids(conn: asyncpg.Connection) -> set[int]:
    return {r["entry_id"] for r in await conn.fetch("SELECT entry_id FROM journal_seals")}


async def test_entries_wait_for_older_transactions_then_chain_per_region(fresh_dsn: str) -> None:
    conn = await prepared(fresh_dsn)
    slow = await asyncpg.connect(fresh_dsn)
    try:
        assert await seal(conn, batch_max=10_000, timeout_s=30) > 0
        before = await sealed_ids(conn)
        tx = slow.transaction()
        await tx.start()
        pending = await add_entry(slow, "510100", 7)  # still uncommitted
        later = await add_entry(conn, "510700", 9)  # committed, but younger than `slow`
        assert await seal(conn, batch_max=10_000, timeout_s=30) == 0
        await tx.commit()
        assert await seal(conn, batch_max=10_000, timeout_s=30) == 2
        assert await sealed_ids(conn) == before | {pending, later}
        report = await verify(conn, timeout_s=30)
        # The seed's opening entries are in the three insured regions (510100, 510700,
        # 511100), this test's two in 510100 and 510700.
        assert report.broken == [] and report.regions == 3
        assert report.sealed == len(before) + 2
    finally:
        await slow.close()
        await conn.close()


async def test_verify_names_an_entry_changed_after_sealing(fresh_dsn: str) -> None:
    conn = await prepared(fresh_dsn)
    try:
        target = await add_entry(conn, "510100", 500)
        await seal(conn, batch_max=10_000, timeout_s=30)
        # Tamper as a superuser would: lift the append-only guard, change both sides.
        await conn.execute("ALTER TABLE postings DISABLE TRIGGER postings_append_only")
        await conn.execute(
            "UPDATE postings SET amount_fen = amount_fen * 2 WHERE entry_id = $1", target
        )
        await conn.execute("ALTER TABLE postings ENABLE TRIGGER postings_append_only")
        report = await verify(conn, timeout_s=30)
        assert report.broken == [
            f"region 510100: entry {target} or its postings changed after sealing"
        ]
    finally:
        await conn.close()
    result = ledger_verify(fresh_dsn)
    assert result.returncode == 1
    assert f"BROKEN: region 510100: entry {target}" in result.stdout
