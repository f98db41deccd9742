"""Cancelling a settlement, shared by 2208 (cancel by setl_id) and 2601 (reverse the
2207 that a msgid produced): lock in 2207's order (visit, settlement, person,
accumulators), refuse what cannot be cancelled, then post the exact negation of the
settlement's entry, return the account money, take the settlement back out of the
accumulators and free its fee details. A settlement is cancelled at most once: its
row is locked and its state checked, and the ledger's unique (setl_id, kind) index
refuses a second cancel entry."""

from __future__ import annotations

import decimal
from dataclasses import dataclass

import asyncpg
import msgspec

from engine.invariant import invariant
from engine.txn.common import check_person_region, fetch_person, fetch_visit
from engine.txn.context import TxContext
from settlement import ledger
from settlement.adjudication import Accumulators
from settlement.money import fen_to_yuan
from terminals.messages import setl
from terminals.results import ResultCode

# Every amount of setlinfo but the balance is shown negated in a cancellation.
_MONEY_FIELDS = tuple(
    f.name
    for f in msgspec.structs.fields(setl.SetlInfo)
    if f.type is decimal.Decimal and f.name != "balc"
)


@dataclass(frozen=True)
class CancelData:
    settlement: asyncpg.Record
    person: asyncpg.Record
    accumulators: asyncpg.Record


async def lock_for_cancel(
    ctx: TxContext, setl_id: str, mdtrt_id: str, psn_no: str, where: str
) -> CancelData | ResultCode:
    """Lock everything a cancellation changes, or refuse (`where` prefixes field names)."""
    timeout_s = ctx.services.command_timeout_s
    # Lock order as in 2207: visit, (settlement), person, accumulators.
    visit = await fetch_visit(ctx, mdtrt_id, lock=True)
    if visit is None or visit["fixmedins_code"] != ctx.envelope.fixmedins_code:
        return ctx.refuse(ResultCode.visit_not_found, f"{where}.mdtrt_id: {mdtrt_id} not found")
    st = await ctx.conn.fetchrow(
        "SELECT * FROM settlements WHERE setl_id = $1 FOR UPDATE",
        setl_id,
        timeout=timeout_s,
    )
    if st is None or st["fixmedins_code"] != ctx.envelope.fixmedins_code:
        return ctx.refuse(ResultCode.settlement_not_found, f"{where}.setl_id: {setl_id} not found")
    if st["mdtrt_id"] != mdtrt_id or st["psn_no"] != psn_no:
        return ctx.refuse(
            ResultCode.settlement_visit_mismatch,
            f"{where}.setl_id: {setl_id} does not belong to this visit and person",
        )
    if st["state"] == "cancelled":
        return ctx.refuse(
            ResultCode.settlement_already_cancelled,
            f"{where}.setl_id: {setl_id} was already cancelled",
        )
    person = await fetch_person(ctx, psn_no, lock=True)
    assert person is not None  # settlements reference persons
    refused = check_person_region(ctx, person)
    if refused is not None:
        return refused
    acc = await ctx.conn.fetchrow(
        "SELECT * FROM person_accumulators WHERE psn_no = $1 AND year = $2 FOR UPDATE",
        psn_no,
        st["year"],
        timeout=timeout_s,
    )
    assert acc is not None  # a settlement always opened its year's accumulators
    return CancelData(st, person, acc)


async def post_cancellation(ctx: TxContext, cd: CancelData) -> None:
    """Post the cancellation; sets ctx.output and ctx.money_moved."""
    st, env = cd.settlement, ctx.envelope
    conn, timeout_s = ctx.conn, ctx.services.command_timeout_s
    entry_id = await conn.fetchval(
        "INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id, fixmedins_code, msgid)"
        " VALUES ('cancel', $1, $2, $3, $4) RETURNING entry_id",
        st["insuplc_admdvs"],
        st["setl_id"],
        env.fixmedins_code,
        env.msgid,
        timeout=timeout_s,
    )
    original = await conn.fetch(
        "SELECT account, amount_fen FROM postings WHERE entry_id = $1",
        st["entry_id"],
        timeout=timeout_s,
    )
    undo = ledger.negated(ledger.Posting(r["account"], r["amount_fen"]) for r in original)
    await conn.executemany(
        "INSERT INTO postings (entry_id, account, amount_fen) VALUES ($1, $2, $3)",
        [(entry_id, x.account, x.amount_fen) for x in undo],
        timeout=timeout_s,
    )
    await conn.execute(
        "UPDATE settlements SET state = 'cancelled', cancel_entry_id = $2, cancel_msgid = $3,"
        " cancelled_at = $4 WHERE setl_id = $1",
        st["setl_id"],
        entry_id,
        env.msgid,
        ctx.now,
        timeout=timeout_s,
    )
    await conn.execute(
        "UPDATE fee_details SET setl_id = NULL WHERE setl_id = $1",
        st["setl_id"],
        timeout=timeout_s,
    )
    acc = cd.accumulators
    balance_before = cd.person["acct_balance_fen"]
    balance_after = balance_before + st["acct_pay_fen"]
    await apply_person_changes(
        ctx,
        st["psn_no"],
        balance_before,
        balance_after,
        Accumulators(
            year=st["year"],
            deductible_used_fen=acc["deductible_used_fen"] - st["act_pay_dedc_fen"],
            # Every 22xx settlement is an outpatient (or pharmacy) benefit.
            outpatient_fund_paid_fen=acc["outpatient_fund_paid_fen"] - st["hifp_pay_fen"],
            fund_paid_fen=acc["fund_paid_fen"] - st["hifp_pay_fen"],
        ),
    )
    ctx.output = cancel_output(ctx, st, balance_after)
    ctx.money_moved = (
        "cancel",
        st["fund_pay_sumamt_fen"],
        st["acct_pay_fen"],
        st["psn_cash_pay_fen"],
    )


def cancel_output(ctx: TxContext, st: asyncpg.Record, balance_after_fen: int) -> setl.Output:
    """The settlement's own answer with every amount negated (a refund), this
    cancellation's time and msgid, and the balance after the refund."""
    original = msgspec.json.decode(st["answer"].encode(), type=setl.Output)
    negated = {name: 0 - getattr(original.setlinfo, name) for name in _MONEY_FIELDS}
    info = msgspec.structs.replace(
        original.setlinfo,
        **negated,
        balc=fen_to_yuan(balance_after_fen),
        setl_time=f"{ctx.now:%Y-%m-%d %H:%M:%S}",
        medins_setl_id=ctx.envelope.msgid,
    )
    details = [
        msgspec.structs.replace(d, inscp_scp_amt=0 - d.inscp_scp_amt, fund_payamt=0 - d.fund_payamt)
        for d in original.setldetail
    ]
    return setl.Output(setlinfo=info, setldetail=details)


async def apply_person_changes(
    ctx: TxContext,
    psn_no: str,
    balance_before_fen: int,
    balance_after_fen: int,
    acc: Accumulators,
) -> None:
    """Write the new balance and accumulators; both rows are locked by this transaction,
    and the WHERE on the old balance makes a lost update impossible to miss."""
    timeout_s = ctx.services.command_timeout_s
    updated = await ctx.conn.execute(
        "UPDATE persons SET acct_balance_fen = $3 WHERE psn_no = $1 AND acct_balance_fen = $2",
        psn_no,
        balance_before_fen,
        balance_after_fen,
        timeout=timeout_s,
    )
    invariant(updated == "UPDATE 1", f"personal account of {psn_no} changed under its lock")
    await ctx.conn.execute(
        "UPDATE person_accumulators SET deductible_used_fen = $3, outpatient_fund_paid_fen = $4,"
        " fund_paid_fen = $5 WHERE psn_no = $1 AND year = $2",
        psn_no,
        acc.year,
        acc.deductible_used_fen,
        acc.outpatient_fund_paid_fen,
        acc.fund_paid_fen,
        timeout=timeout_s,
    )
