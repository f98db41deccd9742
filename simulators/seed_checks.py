"""The checks a bulk seed makes once, before commit, instead of once per row.

Per row, three of the database's checks cost more than everything else the seed
does on the server at 10^7 persons: the deferred balance trigger
(`postings_balance_at_commit`, migration 0002) sums the whole entry once per posting,
so 7·10^6 postings in entries of 201 accounts cost 1.4·10^9 row visits at commit;
the foreign key from cards to persons looks up and locks a person per card; and the
unique index on persons.certno takes its keys in random order. Inside the seed's own
transaction, when the seeding role owns the tables, the seed therefore switches the
trigger off and drops those two constraints, and before commit:

- re-creates each constraint from its own catalog definition (pg_get_constraintdef,
  read before the drop, so it is exactly what the migrations made), which checks
  every row at once: the unique index is built by sorting, the foreign key by one
  join, and a violation fails the seed as the per-row check would have;
- sums the postings of every entry the seed wrote in one query (the check of
  `yikatong ledger check`) and only then switches the trigger on again.

Other transactions never see any of this: DDL is transactional and nothing is
committed until the checks are back, and the locks taken (ACCESS EXCLUSIVE on persons
and cards, SHARE ROW EXCLUSIVE on postings) keep anyone else from writing those
tables meanwhile; readers of persons and cards wait for the seed instead of seeing
them empty. A role that does not own the tables leaves every check per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

BALANCE_TRIGGER = "postings_balance_at_commit"
# (table, constraint) checked once at the end; a name no migration has made any
# more is skipped (that check then stays per row).
CONSTRAINTS_CHECKED_ONCE = (("cards", "cards_psn_no_fkey"), ("persons", "persons_certno_key"))
OWNED_TABLES = ("persons", "cards", "postings")
UNBALANCED_SHOWN = 5


class SeedError(Exception):
    """The seed would leave the ledger inconsistent; its transaction is rolled back."""


@dataclass(frozen=True)
class Deferred:
    """What `defer()` switched off, and the statements that bring each back."""

    recreate: list[str]  # ALTER TABLE ... ADD CONSTRAINT, in order
    trigger_off: bool

    @property
    def any(self) -> bool:
        return self.trigger_off or bool(self.recreate)


async def defer(conn: asyncpg.Connection, timeout_s: float) -> Deferred:
    """Switch the per-row checks off for this transaction, if the role owns the tables."""
    owner = await conn.fetchval(
        "SELECT bool_and(pg_has_role(current_user, relowner, 'USAGE')) FROM pg_class"
        " WHERE oid = ANY($1::regclass[])",
        list(OWNED_TABLES),
        timeout=timeout_s,
    )
    if not owner:
        return Deferred(recreate=[], trigger_off=False)
    await conn.execute(f"ALTER TABLE postings DISABLE TRIGGER {BALANCE_TRIGGER}", timeout=timeout_s)
    rows = await conn.fetch(
        "SELECT format('ALTER TABLE %I DROP CONSTRAINT %I', r.relname, c.conname) AS drop_sql,"
        "  format('ALTER TABLE %I ADD CONSTRAINT %I %s', r.relname, c.conname,"
        "         pg_get_constraintdef(c.oid)) AS add_sql"
        " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(relname, conname, n)"
        " JOIN pg_class r ON r.relname = w.relname AND r.relnamespace = current_schema()::regnamespace"
        " JOIN pg_constraint c ON c.conrelid = r.oid AND c.conname = w.conname"
        " ORDER BY w.n",
        [t for t, _ in CONSTRAINTS_CHECKED_ONCE],
        [c for _, c in CONSTRAINTS_CHECKED_ONCE],
        timeout=timeout_s,
    )
    for r in rows:
        await conn.execute(r["drop_sql"], timeout=timeout_s)
    return Deferred(recreate=[r["add_sql"] for r in rows], trigger_off=True)


async def restore(
    conn: asyncpg.Connection, deferred: Deferred, first_entry_id: int | None, timeout_s: float
) -> None:
    """Check every row once and switch the per-row checks on again. `first_entry_id`
    is the lowest journal entry id this transaction wrote (None: it wrote none)."""
    for sql in deferred.recreate:
        await conn.execute(sql, timeout=timeout_s)
    if not deferred.trigger_off:
        return
    if first_entry_id is not None:
        # Entries from first_entry_id on are the seed's: nobody else can have added
        # postings since the trigger went off (the lock), and earlier commits balanced.
        rows = await conn.fetch(
            "SELECT entry_id, sum(amount_fen) AS sum_fen FROM postings WHERE entry_id >= $1"
            " GROUP BY entry_id HAVING sum(amount_fen) <> 0 ORDER BY entry_id LIMIT $2",
            first_entry_id,
            UNBALANCED_SHOWN,
            timeout=timeout_s,
        )
        if rows:
            shown = ", ".join(f"{r['entry_id']} (sum {r['sum_fen']} fen)" for r in rows)
            raise SeedError(f"journal entries do not balance: {shown}")
    await conn.execute(f"ALTER TABLE postings ENABLE TRIGGER {BALANCE_TRIGGER}", timeout=timeout_s)
