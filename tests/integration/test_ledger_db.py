"""The ledger's own defences in the database, and the checker that finds what they
cannot prevent: unbalanced entries are refused at commit, history cannot be edited,
and `yikatong ledger check` exits 1 naming the invariant a tampered row breaks."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

from engine.db import migrate
from simulators.population import generate, load


async def prepared(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await migrate.migrate(conn, migrate.packaged_migrations(), timeout_s=30)
    await load(conn, generate(7, 50, hospitals=2, pharmacies=1, items=10))
    return conn


def ledger_check(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "ledger", "check"],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_unbalanced_entry_is_refused_at_commit(fresh_dsn: str) -> None:
    conn = await prepared(fresh_dsn)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with conn.transaction():
                entry = await conn.fetchval(
                    "INSERT INTO journal_entries (kind, insuplc_admdvs) VALUES ('opening', '510100')"
                    " RETURNING entry_id"
                )
                await conn.execute(
                    "INSERT INTO postings (entry_id, account, amount_fen) VALUES ($1, 'fund:510100:310', 100),"
                    " ($1, 'acct:510100000000000001', -99)",
                    entry,
                )
    finally:
        await conn.close()


async def test_postings_and_entries_are_append_only(fresh_dsn: str) -> None:
    conn = await prepared(fresh_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE postings SET amount_fen = amount_fen + 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM journal_entries")
    finally:
        await conn.close()


async def test_ledger_check_passes_on_a_seeded_database_and_fails_on_a_tampered_balance(
    fresh_dsn: str,
) -> None:
    conn = await prepared(fresh_dsn)
    try:
        ok = ledger_check(fresh_dsn)
        assert ok.returncode == 0, ok.stderr
        assert "ledger balanced" in ok.stdout
        psn_no = await conn.fetchval(
            "SELECT psn_no FROM persons WHERE acct_balance_fen > 0 LIMIT 1"
        )
        await conn.execute(
            "UPDATE persons SET acct_balance_fen = acct_balance_fen + 1 WHERE psn_no = $1", psn_no
        )
    finally:
        await conn.close()
    bad = ledger_check(fresh_dsn)
    assert bad.returncode == 1
    assert "VIOLATED: personal account balance" in bad.stdout
    assert psn_no in bad.stdout


async def test_ledger_check_names_a_posting_to_the_account_of_no_person(fresh_dsn: str) -> None:
    conn = await prepared(fresh_dsn)
    try:
        async with conn.transaction():
            entry = await conn.fetchval(
                "INSERT INTO journal_entries (kind, insuplc_admdvs) VALUES ('opening', '510100')"
                " RETURNING entry_id"
            )
            await conn.execute(
                "INSERT INTO postings (entry_id, account, amount_fen) VALUES"
                " ($1, 'contrib:510100:310', 100), ($1, 'acct:510100999999999999', -100)",
                entry,
            )
    finally:
        await conn.close()
    bad = ledger_check(fresh_dsn)
    assert bad.returncode == 1
    assert "VIOLATED: ledger accounts of persons exist" in bad.stdout
    assert "acct:510100999999999999" in bad.stdout
