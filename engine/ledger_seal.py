"""Sealing the journal into per-region hash chains, and verifying them
(`yikatong ledger seal`, `yikatong ledger verify`; the engine seals in the
background, and reports what is left to seal, `backlog`, to its metrics). See
migration 0004 for why sealing follows commit.

An entry's hash is SHA-256 over the previous seal's hash of its region and the
entry's canonical text: id, kind, region, settlement id, institution, msgid, creation
time and its postings sorted by account. Changing any of these in an entry that was
sealed, or removing or reordering seals, breaks the chain from that entry on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from engine.invariant import InvariantViolation

GENESIS = bytes(32)
SEAL_LOCK_KEY = 0x59_4B_53_4C  # "YKSL": one sealer at a time across processes


def entry_hash(prev_hash: bytes, entry: asyncpg.Record, postings: list[tuple[str, int]]) -> bytes:
    created = entry["created_at"].isoformat()
    head = "|".join(
        str(x or "")
        for x in (
            entry["entry_id"],
            entry["kind"],
            entry["insuplc_admdvs"],
            entry["setl_id"],
            entry["fixmedins_code"],
            entry["msgid"],
            created,
        )
    )
    body = ";".join(f"{account}:{amount}" for account, amount in sorted(postings))
    return hashlib.sha256(prev_hash + f"{head}|{body}".encode()).digest()


async def _postings(
    conn: asyncpg.Connection, entry_ids: list[int], timeout_s: float
) -> dict[int, list[tuple[str, int]]]:
    rows = await conn.fetch(
        "SELECT entry_id, account, amount_fen FROM postings WHERE entry_id = ANY($1::bigint[])",
        entry_ids,
        timeout=timeout_s,
    )
    out: dict[int, list[tuple[str, int]]] = {i: [] for i in entry_ids}
    for r in rows:
        out[r["entry_id"]].append((r["account"], r["amount_fen"]))
    return out


async def seal(conn: asyncpg.Connection, *, batch_max: int, timeout_s: float) -> int:
    """Seal up to `batch_max` finished entries; return how many were sealed. Another
    sealer running at the same time makes this one return 0."""
    async with conn.transaction():
        if not await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_KEY, timeout=timeout_s
        ):
            return 0
        low = await conn.fetchval(
            "SELECT sealed_below_xid FROM journal_seal_state", timeout=timeout_s
        )
        horizon = await conn.fetchval(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())", timeout=timeout_s
        )
        ready = await conn.fetch(
            "SELECT e.* FROM journal_entries e"
            " WHERE e.created_xid >= $1 AND e.created_xid < $2"
            " AND NOT EXISTS (SELECT 1 FROM journal_seals s WHERE s.entry_id = e.entry_id)"
            " ORDER BY e.created_xid, e.entry_id LIMIT $3",
            low,
            horizon,
            batch_max,
            timeout=timeout_s,
        )
        if ready:
            heads = {
                r["insuplc_admdvs"]: (r["seal_seq"], bytes(r["entry_hash"]))
                for r in await conn.fetch(
                    "SELECT DISTINCT ON (insuplc_admdvs) insuplc_admdvs, seal_seq, entry_hash"
                    " FROM journal_seals WHERE insuplc_admdvs = ANY($1::text[])"
                    " ORDER BY insuplc_admdvs, seal_seq DESC",
                    list({e["insuplc_admdvs"] for e in ready}),
                    timeout=timeout_s,
                )
            }
            postings = await _postings(conn, [e["entry_id"] for e in ready], timeout_s)
            seals = []
            for e in ready:
                seq, prev = heads.get(e["insuplc_admdvs"], (0, GENESIS))
                digest = entry_hash(prev, e, postings[e["entry_id"]])
                seals.append((e["entry_id"], e["insuplc_admdvs"], seq + 1, prev, digest))
                heads[e["insuplc_admdvs"]] = (seq + 1, digest)
            await conn.copy_records_to_table(
                "journal_seals",
                records=seals,
                columns=["entry_id", "insuplc_admdvs", "seal_seq", "prev_hash", "entry_hash"],
                timeout=timeout_s,
            )
        # A full batch may have stopped inside one transaction's entries: look again
        # from that transaction next time (sealed entries are skipped).
        new_low = ready[-1]["created_xid"] if len(ready) == batch_max else horizon
        await conn.execute(
            "UPDATE journal_seal_state SET sealed_below_xid = $1", new_low, timeout=timeout_s
        )
        return len(ready)


@dataclass(frozen=True)
class Backlog:
    """What is left to seal: committed entries without a seal, and the age of the
    oldest of them (0.0 when none) — the metrics' seal lag."""

    entries: int
    oldest_age_s: float


async def backlog(conn: asyncpg.Connection, *, timeout_s: float) -> Backlog:
    """One indexed query over the unsealed tail: every entry below the seal state's
    `sealed_below_xid` is sealed (see `seal`), so only the ones from there on are
    looked at. An entry's age runs from its transaction's start (created_at)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS entries,"
        " coalesce(extract(epoch FROM clock_timestamp() - min(e.created_at)), 0)::float8 AS age_s"
        " FROM journal_entries e, journal_seal_state st"
        " WHERE e.created_xid >= st.sealed_below_xid"
        " AND NOT EXISTS (SELECT 1 FROM journal_seals s WHERE s.entry_id = e.entry_id)",
        timeout=timeout_s,
    )
    if row is None:
        raise InvariantViolation("an aggregate without GROUP BY answers one row")
    return Backlog(entries=int(row["entries"]), oldest_age_s=max(0.0, float(row["age_s"])))


@dataclass(frozen=True)
class VerifyReport:
    sealed: int
    regions: int
    broken: list[str]  # one line per region whose chain breaks, naming the first entry


async def verify(conn: asyncpg.Connection, *, timeout_s: float) -> VerifyReport:
    """Recompute every region's chain from the entries and postings as they are now."""
    broken: list[str] = []
    sealed = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        regions = [
            r["insuplc_admdvs"]
            for r in await conn.fetch(
                "SELECT DISTINCT insuplc_admdvs FROM journal_seals ORDER BY 1", timeout=timeout_s
            )
        ]
        for region in regions:
            seals = await conn.fetch(
                "SELECT s.seal_seq, s.prev_hash, s.entry_hash, e.* FROM journal_seals s"
                " LEFT JOIN journal_entries e USING (entry_id)"
                " WHERE s.insuplc_admdvs = $1 ORDER BY s.seal_seq",
                region,
                timeout=timeout_s,
            )
            postings = await _postings(conn, [s["entry_id"] for s in seals], timeout_s)
            prev = GENESIS
            for expected_seq, s in enumerate(seals, start=1):
                sealed += 1
                problem = None
                if s["seal_seq"] != expected_seq:
                    problem = f"seal {expected_seq} is missing"
                elif bytes(s["prev_hash"]) != prev:
                    problem = f"entry {s['entry_id']} does not follow the seal before it"
                elif s["kind"] is None:
                    problem = f"entry {s['entry_id']} was removed"
                elif entry_hash(prev, s, postings[s["entry_id"]]) != bytes(s["entry_hash"]):
                    problem = f"entry {s['entry_id']} or its postings changed after sealing"
                if problem is not None:
                    broken.append(f"region {region}: {problem}")
                    break
                prev = bytes(s["entry_hash"])
    return VerifyReport(sealed=sealed, regions=len(regions), broken=broken)
