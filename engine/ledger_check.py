"""`yikatong ledger check`: verify every ledger invariant over the whole database.

Each check is one SQL query that returns the offending rows (none when the invariant
holds); the report lists every violation with its first offending rows. Invariants
(DESIGN.md §6): each journal entry balances; all postings sum to zero; each person's
stored account balance equals minus the postings on their account and is never
negative; each settlement has exactly the settle entry its amounts require, each of
its cancel entries negates it and each reinstate entry (a reversed cancellation) posts
it again, one more cancel than reinstate exactly when it is cancelled; accumulators
equal what live settlements paid and stay within their caps; settled fee details belong to live settlements whose total
they make up; the cross-region clearing accounts of every (insured, treating) region
pair net out, and equal the fund and account money of the pair's live settlements
(none for a local pair).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from engine.invariant import invariant

CHECKS: tuple[tuple[str, str], ...] = (
    (
        "every journal entry balances",
        "SELECT entry_id, sum(amount_fen) AS sum_fen FROM postings GROUP BY entry_id"
        " HAVING sum(amount_fen) <> 0",
    ),
    (
        "all postings sum to zero",
        "SELECT sum(amount_fen) AS sum_fen FROM postings HAVING sum(amount_fen) <> 0",
    ),
    (
        "personal account balance = -(postings on acct:<psn_no>) and >= 0",
        "SELECT p.psn_no, p.acct_balance_fen, -COALESCE(a.sum_fen, 0) AS ledger_fen"
        " FROM persons p LEFT JOIN (SELECT substr(account, 6) AS psn_no, sum(amount_fen) AS sum_fen"
        " FROM postings WHERE account LIKE 'acct:%' GROUP BY 1) a USING (psn_no)"
        " WHERE p.acct_balance_fen <> -COALESCE(a.sum_fen, 0) OR p.acct_balance_fen < 0",
    ),
    (
        "ledger accounts of persons exist",
        # NOT EXISTS, not NOT IN: an anti-join, where NOT IN over 10^6 persons (more
        # than work_mem can hash) rescans persons for every posting.
        "SELECT DISTINCT account FROM postings WHERE account LIKE 'acct:%'"
        " AND NOT EXISTS (SELECT 1 FROM persons p WHERE p.psn_no = substr(postings.account, 6))",
    ),
    (
        "each settlement's settle entry posts its fund, account and cash amounts",
        "SELECT s.setl_id FROM settlements s LEFT JOIN LATERAL ("
        "  SELECT sum(amount_fen) FILTER (WHERE account LIKE 'fund:%') AS fund_fen,"
        "         sum(amount_fen) FILTER (WHERE account LIKE 'acct:%') AS acct_fen,"
        "         sum(amount_fen) FILTER (WHERE account LIKE 'oop:%') AS cash_fen"
        "  FROM postings WHERE entry_id = s.entry_id) e ON true"
        " JOIN journal_entries j ON j.entry_id = s.entry_id"
        " WHERE j.kind <> 'settle' OR j.setl_id <> s.setl_id"
        " OR COALESCE(e.fund_fen, 0) <> s.fund_pay_sumamt_fen"
        " OR COALESCE(e.acct_fen, 0) <> s.acct_pay_fen"
        " OR COALESCE(e.cash_fen, 0) <> s.psn_cash_pay_fen",
    ),
    (
        "each cancel entry negates its settlement's settle entry; each reinstate entry"
        " posts it again",
        "SELECT e.entry_id, e.kind, e.setl_id FROM journal_entries e JOIN settlements s"
        " USING (setl_id) WHERE e.kind IN ('cancel', 'reinstate') AND EXISTS ("
        "  SELECT 1 FROM (SELECT account, sum(amount_fen) AS fen FROM postings"
        "    WHERE entry_id = s.entry_id GROUP BY 1) st"
        "  FULL JOIN (SELECT account, sum(amount_fen) AS fen FROM postings"
        "    WHERE entry_id = e.entry_id GROUP BY 1) x USING (account)"
        "  WHERE COALESCE(x.fen, 0)"
        "    <> CASE e.kind WHEN 'cancel' THEN -1 ELSE 1 END * COALESCE(st.fen, 0))",
    ),
    (
        "a settlement is cancelled once more than reinstated exactly when it is"
        " cancelled, by its latest cancel entry",
        "SELECT s.setl_id, s.state FROM settlements s LEFT JOIN ("
        "  SELECT setl_id, count(*) FILTER (WHERE kind = 'cancel') AS cancels,"
        "  count(*) FILTER (WHERE kind = 'reinstate') AS reinstates,"
        "  max(entry_id) FILTER (WHERE kind = 'cancel') AS last_cancel,"
        "  min(entry_id) FILTER (WHERE kind = 'cancel') AS first_cancel,"
        "  max(entry_id) FILTER (WHERE kind = 'reinstate') AS last_reinstate"
        "  FROM journal_entries WHERE kind IN ('cancel', 'reinstate') GROUP BY 1"
        " ) j USING (setl_id)"
        " WHERE COALESCE(j.cancels, 0) - COALESCE(j.reinstates, 0)"
        "   <> CASE WHEN s.state = 'cancelled' THEN 1 ELSE 0 END"
        " OR (s.state = 'cancelled' AND s.cancel_entry_id IS DISTINCT FROM j.last_cancel)"
        " OR (s.state = 'settled' AND s.cancel_entry_id IS NOT NULL)"
        " OR j.last_reinstate < j.first_cancel",
    ),
    (
        "every settle, cancel or reinstate entry belongs to a settlement",
        "SELECT j.entry_id FROM journal_entries j"
        " WHERE j.kind IN ('settle', 'cancel', 'reinstate')"
        " AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.setl_id = j.setl_id)",
    ),
    (
        "accumulators equal what live settlements paid, within their limits",
        "SELECT a.psn_no, a.year FROM person_accumulators a LEFT JOIN ("
        "  SELECT psn_no, year, sum(hifp_pay_fen) AS fund_fen, sum(act_pay_dedc_fen) AS dedc_fen"
        "  FROM settlements WHERE state = 'settled' GROUP BY 1, 2) s USING (psn_no, year)"
        " WHERE a.fund_paid_fen <> COALESCE(s.fund_fen, 0)"
        " OR a.outpatient_fund_paid_fen <> COALESCE(s.fund_fen, 0)"
        " OR a.deductible_used_fen <> COALESCE(s.dedc_fen, 0)"
        " OR a.fund_paid_fen > a.annual_cap_fen"
        " OR a.outpatient_fund_paid_fen > a.outpatient_limit_fen",
    ),
    (
        "each region pair's clearing accounts net out",
        "SELECT insuplc, treating, d.due_fen, r.recv_fen FROM ("
        "  SELECT split_part(account, ':', 2) AS insuplc, split_part(account, ':', 3) AS treating,"
        "  sum(amount_fen) AS due_fen FROM postings WHERE account LIKE 'xdue:%' GROUP BY 1, 2"
        " ) d FULL JOIN ("
        "  SELECT split_part(account, ':', 3) AS insuplc, split_part(account, ':', 2) AS treating,"
        "  sum(amount_fen) AS recv_fen FROM postings WHERE account LIKE 'xrecv:%' GROUP BY 1, 2"
        " ) r USING (insuplc, treating)"
        " WHERE COALESCE(d.due_fen, 0) + COALESCE(r.recv_fen, 0) <> 0",
    ),
    (
        "a region pair's clearing equals the fund and account money of its live"
        " cross-region settlements",
        "SELECT COALESCE(r.insuplc, s.insuplc_admdvs) AS insuplc,"
        " COALESCE(r.treating, s.mdtrtarea_admvs) AS treating,"
        " r.recv_fen, s.owed_fen FROM ("
        "  SELECT split_part(account, ':', 3) AS insuplc, split_part(account, ':', 2) AS treating,"
        "  sum(amount_fen) AS recv_fen FROM postings WHERE account LIKE 'xrecv:%' GROUP BY 1, 2"
        " ) r FULL JOIN ("
        "  SELECT insuplc_admdvs, mdtrtarea_admvs, sum(fund_pay_sumamt_fen + acct_pay_fen) AS owed_fen"
        "  FROM settlements WHERE state = 'settled' AND insuplc_admdvs <> mdtrtarea_admvs"
        "  GROUP BY 1, 2"
        " ) s ON s.insuplc_admdvs = r.insuplc AND s.mdtrtarea_admvs = r.treating"
        " WHERE COALESCE(r.recv_fen, 0) <> COALESCE(s.owed_fen, 0)"
        " OR COALESCE(r.insuplc, s.insuplc_admdvs) = COALESCE(r.treating, s.mdtrtarea_admvs)",
    ),
    (
        "settled fee details make up live settlements",
        "SELECT s.setl_id FROM settlements s LEFT JOIN ("
        "  SELECT setl_id, sum(det_item_fee_sumamt_fen) AS total_fen FROM fee_details"
        "  WHERE setl_id IS NOT NULL GROUP BY 1) d USING (setl_id)"
        " WHERE (s.state = 'settled' AND COALESCE(d.total_fen, -1) <> s.medfee_sumamt_fen)"
        " OR (s.state = 'cancelled' AND d.total_fen IS NOT NULL)",
    ),
)

ROWS_SHOWN = 5


@dataclass(frozen=True)
class Violation:
    invariant: str
    rows: list[dict[str, object]]


@dataclass(frozen=True)
class Report:
    violations: list[Violation]
    entries: int
    postings: int
    settled: int
    cancelled: int

    @property
    def balanced(self) -> bool:
        return not self.violations


async def check(conn: asyncpg.Connection, timeout_s: float) -> Report:
    """Run every check in one repeatable-read snapshot, so concurrent writers cannot
    make a consistent ledger look inconsistent."""
    violations: list[Violation] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, sql in CHECKS:
            rows = await conn.fetch(sql, timeout=timeout_s)
            if rows:
                violations.append(Violation(name, [dict(r) for r in rows[:ROWS_SHOWN]]))
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM journal_entries) AS entries,"
            " (SELECT count(*) FROM postings) AS postings,"
            " (SELECT count(*) FROM settlements WHERE state = 'settled') AS settled,"
            " (SELECT count(*) FROM settlements WHERE state = 'cancelled') AS cancelled",
            timeout=timeout_s,
        )
    invariant(counts is not None, "a SELECT of scalar subqueries returns one row")
    return Report(
        violations, counts["entries"], counts["postings"], counts["settled"], counts["cancelled"]
    )


@dataclass(frozen=True)
class ClearingPair:
    """What an insured region owes a treating region for its insured's live
    cross-region settlements (DOMAIN.md §5.4), from both regions' books."""

    insuplc_admdvs: str
    mdtrtarea_admvs: str
    settlements: int  # live cross-region settlements of the pair
    owed_fen: int  # their fund and account money
    due_fen: int  # -(postings on xdue:<insured>:<treating>): the insured region's payable
    receivable_fen: int  # postings on xrecv:<treating>:<insured>: the treating region's


CLEARING_SQL = (
    "SELECT COALESCE(s.insuplc_admdvs, b.insuplc) AS insuplc,"
    " COALESCE(s.mdtrtarea_admvs, b.treating) AS treating,"
    " COALESCE(s.n, 0) AS n, COALESCE(s.owed_fen, 0) AS owed_fen,"
    " COALESCE(-b.due_fen, 0) AS due_fen, COALESCE(b.recv_fen, 0) AS recv_fen FROM ("
    "  SELECT insuplc_admdvs, mdtrtarea_admvs, count(*) AS n,"
    "  sum(fund_pay_sumamt_fen + acct_pay_fen) AS owed_fen FROM settlements"
    "  WHERE state = 'settled' AND insuplc_admdvs <> mdtrtarea_admvs GROUP BY 1, 2"
    " ) s FULL JOIN ("
    "  SELECT CASE WHEN account LIKE 'xdue:%' THEN split_part(account, ':', 2)"
    "         ELSE split_part(account, ':', 3) END AS insuplc,"
    "  CASE WHEN account LIKE 'xdue:%' THEN split_part(account, ':', 3)"
    "       ELSE split_part(account, ':', 2) END AS treating,"
    "  sum(amount_fen) FILTER (WHERE account LIKE 'xdue:%') AS due_fen,"
    "  sum(amount_fen) FILTER (WHERE account LIKE 'xrecv:%') AS recv_fen"
    "  FROM postings WHERE account LIKE 'xdue:%' OR account LIKE 'xrecv:%' GROUP BY 1, 2"
    " ) b ON b.insuplc = s.insuplc_admdvs AND b.treating = s.mdtrtarea_admvs"
    " ORDER BY 1, 2"
)


async def clearing(conn: asyncpg.Connection, timeout_s: float) -> list[ClearingPair]:
    """The clearing balances of every region pair, in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(CLEARING_SQL, timeout=timeout_s)
    return [
        ClearingPair(  # sum() of bigint is numeric: back to int
            r["insuplc"],
            r["treating"],
            int(r["n"]),
            int(r["owed_fen"]),
            int(r["due_fen"]),
            int(r["recv_fen"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ByStatus:
    """Live settlements' money by cross-region status (local: insured where treated)."""

    cross_region: bool
    settlements: int
    medfee_fen: int
    fund_fen: int
    acct_fen: int
    cash_fen: int


BY_STATUS_SQL = (
    "SELECT insuplc_admdvs <> mdtrtarea_admvs AS cross_region, count(*) AS n,"
    " sum(medfee_sumamt_fen) AS medfee, sum(fund_pay_sumamt_fen) AS fund,"
    " sum(acct_pay_fen) AS acct, sum(psn_cash_pay_fen) AS cash"
    " FROM settlements WHERE state = 'settled' GROUP BY 1 ORDER BY 1"
)


async def by_cross_region_status(conn: asyncpg.Connection, timeout_s: float) -> list[ByStatus]:
    rows = await conn.fetch(BY_STATUS_SQL, timeout=timeout_s)
    return [
        ByStatus(
            r["cross_region"],
            int(r["n"]),
            int(r["medfee"]),
            int(r["fund"]),
            int(r["acct"]),
            int(r["cash"]),
        )
        for r in rows
    ]
