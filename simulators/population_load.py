"""Writing a population into an empty, migrated database in one transaction, with
COPY, in chunks: `yikatong seed` streams 10^7 persons through it in flat memory, and
`load_population()` writes a `Population` held in memory the same way.

Per chunk of persons: their rows, their cards and cross-region filings (derived from
the index) and the
opening journal entries that fund the personal accounts from contributions, one
entry per OPENING_ENTRY_ACCOUNTS accounts of one insured region and scheme, in person
order. Accounts not yet in a full entry wait for the next chunk, so the entries are
the same whatever the chunk size.

The database's per-row checks that cost most at that size (the balance trigger, the
cards-to-persons foreign key, the unique ID numbers) are made once before commit
instead, when the seeding role owns the tables: simulators.seed_checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import asyncpg

from settlement import ledger
from simulators import seed_checks
from simulators.person_draw import PersonRow
from simulators.population import (
    CARD_COLUMNS,
    FILING_COLUMNS,
    PERSON_COLUMNS,
    CatalogEntry,
    Institution,
    Population,
    card_record,
    filing_record,
    regional_prices,
)

CHUNK_PERSONS = 50_000  # persons per round of COPYs: the loader's memory is about this
OPENING_ENTRY_ACCOUNTS = 200  # personal accounts funded by one opening entry

Progress = Callable[[int], None]  # called with the number of persons written so far


@dataclass
class _OpeningEntries:
    """Accounts waiting for a full entry, per (insured region, scheme), and the
    entries ready to be written, in the order they filled up."""

    waiting: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    ready: list[tuple[str, str, list[tuple[str, int]]]] = field(default_factory=list)

    def add(self, person: PersonRow) -> None:
        psn_no, region, _, _, _, _, insutype, _, _, _, balance_fen = person
        if balance_fen == 0:
            return
        accounts = self.waiting.setdefault((region, insutype), [])
        accounts.append((psn_no, balance_fen))
        if len(accounts) == OPENING_ENTRY_ACCOUNTS:
            self.ready.append((region, insutype, accounts))
            del self.waiting[(region, insutype)]

    def take_ready(self) -> list[tuple[str, str, list[tuple[str, int]]]]:
        out, self.ready = self.ready, []
        return out

    def take_rest(self) -> list[tuple[str, str, list[tuple[str, int]]]]:
        """The partly filled entries, in (region, scheme) order."""
        out = [(r, t, accounts) for (r, t), accounts in sorted(self.waiting.items())]
        self.waiting = {}
        return out


async def load_population(
    conn: asyncpg.Connection, pop: Population, *, timeout_s: float = 600.0
) -> None:
    await load_stream(
        conn,
        pop.institutions,
        pop.catalog,
        (p.row() for p in pop.persons),
        timeout_s=timeout_s,
    )


async def load_stream(
    conn: asyncpg.Connection,
    institutions: list[Institution],
    catalog: list[CatalogEntry],
    persons: Iterable[PersonRow],
    *,
    chunk_persons: int = CHUNK_PERSONS,
    progress: Progress | None = None,
    timeout_s: float = 600.0,
) -> int:
    """Write everything in one transaction; return the number of persons written.
    `persons` is consumed once, `chunk_persons` at a time."""
    if chunk_persons < 1:
        raise ValueError("chunk_persons must be at least 1")
    rows = iter(persons)
    written = 0
    first_entry_id: int | None = None  # the lowest entry id this seed wrote
    async with conn.transaction():
        await _copy_reference_data(conn, institutions, catalog, timeout_s)
        deferred = await seed_checks.defer(conn, timeout_s)
        opening = _OpeningEntries()
        while chunk := await _copy_chunk(conn, written, islice(rows, chunk_persons), timeout_s):
            for person in chunk:
                opening.add(person)
            ids = await _write_entries(conn, opening.take_ready(), timeout_s)
            if first_entry_id is None and ids:
                first_entry_id = ids[0]
            written += len(chunk)
            if progress is not None:
                progress(written)
        ids = await _write_entries(conn, opening.take_rest(), timeout_s)
        if first_entry_id is None and ids:
            first_entry_id = ids[0]
        await seed_checks.restore(conn, deferred, first_entry_id, timeout_s)
    return written


async def _copy_reference_data(
    conn: asyncpg.Connection,
    institutions: list[Institution],
    catalog: list[CatalogEntry],
    timeout_s: float,
) -> None:
    await conn.copy_records_to_table(
        "institutions",
        records=[
            (i.fixmedins_code, i.fixmedins_name, i.admdvs, i.level, i.inst_type)
            for i in institutions
        ],
        columns=["fixmedins_code", "fixmedins_name", "admdvs", "level", "inst_type"],
        timeout=timeout_s,
    )
    await conn.copy_records_to_table(
        "terminals",
        records=[(i.terminal_id, i.fixmedins_code) for i in institutions],
        columns=["terminal_id", "fixmedins_code"],
        timeout=timeout_s,
    )
    await conn.copy_records_to_table(
        "operators",
        records=[(i.fixmedins_code, i.opter, f"收费员{i.opter[-3:]}") for i in institutions],
        columns=["fixmedins_code", "opter", "opter_name"],
        timeout=timeout_s,
    )
    await conn.copy_records_to_table(
        "catalog_items",
        records=[
            (
                c.med_list_codg,
                c.name,
                c.chrgitm_lv,
                c.list_type,
                c.price_ceiling_fen_per_unit,
                c.selfpay_prop_bp,
            )
            for c in catalog
        ],
        columns=[
            "med_list_codg",
            "name",
            "chrgitm_lv",
            "list_type",
            "price_ceiling_fen_per_unit",
            "selfpay_prop_bp",
        ],
        timeout=timeout_s,
    )
    await conn.copy_records_to_table(
        "catalog_region_prices",
        records=regional_prices(catalog),
        columns=["admdvs", "med_list_codg", "price_ceiling_fen_per_unit"],
        timeout=timeout_s,
    )


async def _copy_chunk(
    conn: asyncpg.Connection, first_index: int, persons: Iterator[PersonRow], timeout_s: float
) -> list[PersonRow]:
    """COPY the persons `persons` yields, then their cards; return those persons.
    Rows are drawn while COPY sends them, so the server inserts meanwhile."""
    chunk: list[PersonRow] = []

    def drawn() -> Iterator[PersonRow]:
        for row in persons:
            chunk.append(row)
            yield row

    await conn.copy_records_to_table(
        "persons", records=drawn(), columns=PERSON_COLUMNS, timeout=timeout_s
    )
    if chunk:
        # The issuer's record of every card (engine migration 0006), by person index.
        cards = (card_record(first_index + j, row[0], row[1]) for j, row in enumerate(chunk))
        await conn.copy_records_to_table(
            "cards", records=cards, columns=CARD_COLUMNS, timeout=timeout_s
        )
        filings = (
            f
            for j, row in enumerate(chunk)
            if (f := filing_record(first_index + j, row[0], row[1])) is not None
        )
        await conn.copy_records_to_table(
            "cross_region_filings", records=filings, columns=FILING_COLUMNS, timeout=timeout_s
        )
    return chunk


async def _write_entries(
    conn: asyncpg.Connection,
    entries: list[tuple[str, str, list[tuple[str, int]]]],
    timeout_s: float,
) -> list[int]:
    """Write the entries; return their ids, which increase in the entries' order.
    Each debits contributions with the sum and credits each account its balance,
    in that order (ledger.balanced drops nothing: every amount is > 0)."""
    if not entries:
        return []
    ids: list[int] = sorted(
        await conn.fetchval(
            "SELECT array_agg(nextval(pg_get_serial_sequence('journal_entries', 'entry_id')))"
            " FROM generate_series(1, $1)",
            len(entries),
            timeout=timeout_s,
        )
    )
    await conn.copy_records_to_table(
        "journal_entries",
        records=[
            (entry_id, "opening", region)
            for entry_id, (region, _, _) in zip(ids, entries, strict=True)
        ],
        columns=["entry_id", "kind", "insuplc_admdvs"],
        timeout=timeout_s,
    )
    await conn.copy_records_to_table(
        "postings",
        records=_postings(ids, entries),
        columns=["entry_id", "account", "amount_fen"],
        timeout=timeout_s,
    )
    return ids


def _postings(
    ids: list[int], entries: list[tuple[str, str, list[tuple[str, int]]]]
) -> Iterator[tuple[int, str, int]]:
    for entry_id, (region, insutype, accounts) in zip(ids, entries, strict=True):
        postings = [
            ledger.Posting(
                ledger.contributions_account(region, insutype), sum(b for _, b in accounts)
            )
        ]
        postings += [ledger.Posting(ledger.personal_account(p), -b) for p, b in accounts]
        for x in ledger.balanced(postings):
            yield entry_id, x.account, x.amount_fen
