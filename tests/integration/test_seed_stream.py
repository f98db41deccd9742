"""The streamed `yikatong seed` writes exactly the rows that `load(generate(...))`
writes — persons, cards, reference data, opening entries and postings, ids included —
whatever the chunk size; the ledger checks after it; the balance trigger is on again
afterwards and still refuses an unbalanced entry; the constraints the seed checks
once at the end are back exactly as migrated; an unbalanced seed, or one with a
repeated ID number, is rolled back whole; and a role that does not own `postings` seeds the same rows with the trigger
checking them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from engine.db import migrate
from engine.ledger_check import check
from simulators import population_load
from simulators.population import (
    CARD_COLUMNS,
    PERSON_COLUMNS,
    Person,
    card_record,
    generate,
    load,
    stream,
)
from simulators.population_load import OPENING_ENTRY_ACCOUNTS, load_stream
from simulators.seed_checks import SeedError

SEED, PERSONS = 7, 2500
# Smaller than PERSONS, and no multiple of the accounts per entry: entries fill
# across chunk boundaries.
CHUNK = 700
TABLES = {
    "institutions": "SELECT * FROM institutions ORDER BY fixmedins_code",
    "terminals": "SELECT * FROM terminals ORDER BY terminal_id",
    "operators": "SELECT * FROM operators ORDER BY fixmedins_code, opter",
    "catalog_items": "SELECT * FROM catalog_items ORDER BY med_list_codg",
    "persons": "SELECT * FROM persons ORDER BY psn_no",
    "cards": "SELECT * FROM cards ORDER BY card_sn",
    # created_at and created_xid are the writing transaction's
    "journal_entries": "SELECT entry_id, kind, insuplc_admdvs, setl_id, fixmedins_code, msgid"
    " FROM journal_entries ORDER BY entry_id",
    "postings": "SELECT * FROM postings ORDER BY posting_id",
}


def seed_command(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "seed", *args],
        env={"PATH": "/usr/bin:/bin", "YIKATONG_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def migrated(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await migrate.migrate(conn, migrate.packaged_migrations(), timeout_s=60)
    return conn


async def contents(conn: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in TABLES.items()}


def expected_postings() -> Iterator[tuple[str, int]]:
    """Opening entries as the seed makes them: the employees with a balance, in person
    order, OPENING_ENTRY_ACCOUNTS of one insured region to an entry (in the order they
    fill up), then the partly filled ones by region; contributions debited first."""
    waiting: dict[str, list[Person]] = {}
    entries: list[tuple[str, list[Person]]] = []
    for p in generate(SEED, PERSONS).persons:
        if p.acct_balance_fen > 0:
            accounts = waiting.setdefault(p.insuplc_admdvs, [])
            accounts.append(p)
            if len(accounts) == OPENING_ENTRY_ACCOUNTS:
                entries.append((p.insuplc_admdvs, waiting.pop(p.insuplc_admdvs)))
    entries.extend(sorted(waiting.items()))
    for region, chunk in entries:
        yield f"contrib:{region}:310", sum(p.acct_balance_fen for p in chunk)
        for p in chunk:
            yield f"acct:{p.psn_no}", -p.acct_balance_fen


@pytest.fixture
async def other_dsn(fresh_dsn: str) -> AsyncIterator[str]:
    """A second fresh database next to `fresh_dsn`, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(fresh_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = fresh_dsn.split("?")[0].rsplit("/", 1)[0] + f"/{name}?" + fresh_dsn.split("?")[1]
    yield dsn
    admin = await asyncpg.connect(fresh_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_streamed_seed_writes_the_rows_load_writes_and_the_ledger_checks(
    fresh_dsn: str, other_dsn: str
) -> None:
    streamed, loaded = await migrated(fresh_dsn), await migrated(other_dsn)
    try:
        seeded = await asyncio.to_thread(
            seed_command,
            fresh_dsn,
            "--persons",
            str(PERSONS),
            "--seed",
            str(SEED),
            "--chunk-persons",
            str(CHUNK),
        )
        assert seeded.returncode == 0, seeded.stderr
        assert f"seeded {PERSONS} persons, 30 institutions" in seeded.stdout
        await load(loaded, generate(SEED, PERSONS))
        got, want = await contents(streamed), await contents(loaded)
        assert got == want
        # ... and those rows are the population's, not merely the same on both sides.
        pop = generate(SEED, PERSONS)
        persons = await streamed.fetch(f"SELECT {', '.join(PERSON_COLUMNS)} FROM persons")
        assert sorted(tuple(r) for r in persons) == sorted(p.row() for p in pop.persons)
        cards = await streamed.fetch(f"SELECT {', '.join(CARD_COLUMNS)} FROM cards")
        assert sorted(tuple(r) for r in cards) == sorted(
            card_record(i, p.psn_no, p.insuplc_admdvs) for i, p in enumerate(pop.persons)
        )
        assert [(r[2], r[3]) for r in got["postings"]] == list(expected_postings())
        report = await check(streamed, timeout_s=60)
        assert report.balanced, report.violations
        assert report.postings == len(got["postings"])
    finally:
        await streamed.close()
        await loaded.close()


SCHEMA = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " ORDER BY 1, 2",
    "SELECT tgrelid::regclass::text, tgname, tgenabled, tgdeferrable, tginitdeferred"
    " FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
)


async def schema(conn: asyncpg.Connection) -> list[list[tuple[object, ...]]]:
    return [[tuple(r) for r in await conn.fetch(sql)] for sql in SCHEMA]


async def test_after_a_seed_the_schema_is_as_migrated_and_checks_rows_again(
    fresh_dsn: str, other_dsn: str
) -> None:
    conn, unseeded = await migrated(fresh_dsn), await migrated(other_dsn)
    try:
        await load(conn, generate(SEED, 300))
        assert await schema(conn) == await schema(unseeded)
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with conn.transaction():
                entry_id = await conn.fetchval(
                    "INSERT INTO journal_entries (kind, insuplc_admdvs)"
                    " VALUES ('opening', '510100') RETURNING entry_id"
                )
                await conn.execute(
                    "INSERT INTO postings (entry_id, account, amount_fen)"
                    " VALUES ($1, 'contrib:510100:310', 5)",
                    entry_id,
                )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO cards SELECT $1, 'S99999999', 'nobody', insuplc_admdvs,"
                " generation, status, issue_date, expiry_date FROM cards LIMIT 1",
                "F" * 32,
            )
        with pytest.raises(asyncpg.UniqueViolationError, match="persons_certno_key"):
            await conn.execute(
                "INSERT INTO persons (psn_no, insuplc_admdvs, certno, psn_name, gend, brdy,"
                " insutype, psn_insu_date) SELECT 'X1', insuplc_admdvs, certno, psn_name, gend,"
                " brdy, insutype, psn_insu_date FROM persons LIMIT 1"
            )
    finally:
        await conn.close()
        await unseeded.close()


async def test_a_seed_with_a_repeated_id_number_is_refused_whole(fresh_dsn: str) -> None:
    pop = generate(SEED, 300)
    pop.persons[250] = replace(pop.persons[250], certno=pop.persons[3].certno)
    conn = await migrated(fresh_dsn)
    try:
        with pytest.raises(asyncpg.UniqueViolationError, match="persons_certno_key"):
            await load(conn, pop)
        assert await conn.fetchval("SELECT count(*) FROM persons") == 0
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'persons_certno_key'"
        )
    finally:
        await conn.close()


def one_fen_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every opening entry debit contributions one fen less than it credits."""
    real = population_load._postings

    def short(*args: object) -> Iterator[tuple[int, str, int]]:
        for entry_id, account, amount_fen in real(*args):  # type: ignore[arg-type]
            yield entry_id, account, amount_fen - (1 if account.startswith("contrib:") else 0)

    monkeypatch.setattr(population_load, "_postings", short)


async def test_unbalanced_seed_is_rolled_back_with_the_trigger_on(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_fen_short(monkeypatch)
    conn = await migrated(fresh_dsn)
    try:
        s = stream(SEED, 600)
        with pytest.raises(SeedError, match="do not balance"):
            await load_stream(conn, s.institutions, s.catalog, s.persons, chunk_persons=250)
        assert await conn.fetchval("SELECT count(*) FROM persons") == 0
        assert await conn.fetchval("SELECT count(*) FROM postings") == 0
        enabled = await conn.fetchval(
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'postings_balance_at_commit'"
        )
        assert enabled == b"O"
    finally:
        await conn.close()


@pytest.fixture
async def seeder_dsn(fresh_dsn: str) -> AsyncIterator[str]:
    """A migrated `fresh_dsn` and a role that may read and insert but owns nothing."""
    role = f"seeder_{uuid.uuid4().hex[:8]}"
    owner = await migrated(fresh_dsn)
    try:
        await owner.execute(f'CREATE ROLE "{role}" LOGIN')
        await owner.execute(f'GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO "{role}"')
        await owner.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        yield fresh_dsn.replace("postgres@", f"{role}@")
    finally:
        await owner.execute(f'DROP OWNED BY "{role}"')
        await owner.execute(f'DROP ROLE IF EXISTS "{role}"')
        await owner.close()


async def test_a_role_not_owning_postings_seeds_the_same_rows_through_the_trigger(
    seeder_dsn: str, other_dsn: str
) -> None:
    seeder, reference = await asyncpg.connect(seeder_dsn), await migrated(other_dsn)
    try:
        s = stream(SEED, 900)
        await load_stream(seeder, s.institutions, s.catalog, s.persons, chunk_persons=250)
        await load(reference, generate(SEED, 900))
        assert await contents(seeder) == await contents(reference)
    finally:
        await seeder.close()
        await reference.close()


async def test_a_role_not_owning_postings_is_checked_by_the_trigger_itself(
    seeder_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_fen_short(monkeypatch)
    seeder = await asyncpg.connect(seeder_dsn)
    try:
        s = stream(SEED, 600)
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await load_stream(seeder, s.institutions, s.catalog, s.persons, chunk_persons=250)
        assert await seeder.fetchval("SELECT count(*) FROM persons") == 0
    finally:
        await seeder.close()
