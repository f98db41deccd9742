"""2207 settlement: posts the adjudicated split as one balanced journal entry, marks
the details settled, debits the personal account and adds to the accumulators — all
in the request's database transaction, after the locks PrepareSettlement took."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from engine.invariant import invariant
from engine.txn.common import (
    ClaimMsgid,
    DecodeInput,
    RequireInsuredRegion,
    RequireSignIn,
    money_message,
)
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant
from engine.txn.registry import TxSpec
from engine.txn.settle import PrepareSettlement, SettleData, setl_output
from settlement import ledger
from settlement.adjudication import Accumulators
from settlement.money import MoneyError, yuan_to_fen
from terminals.messages import tx2207
from terminals.results import ResultCode

# Optional HIS-side totals that, when sent, must agree with the engine's split.
_HIS_TOTALS = (
    ("fulamt_ownpay_amt", "fulamt_ownpay_amt_fen"),
    ("overlmt_selfpay", "overlmt_selfpay_fen"),
    ("preselfpay_amt", "preselfpay_amt_fen"),
    ("inscp_scp_amt", "inscp_scp_amt_fen"),
)


class CheckHisTotals(Participant):
    name: ClassVar[str] = "check_his_totals"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2207.Data = ctx.input.data
        sd: SettleData = ctx.data
        for wire_name, split_name in _HIS_TOTALS:
            value = getattr(data, wire_name)
            if value is None:
                continue
            try:
                fen = yuan_to_fen(value, f"data.{wire_name}")
            except MoneyError as exc:
                return ctx.refuse(ResultCode.field_invalid, money_message(exc, "input"))
            if fen != getattr(sd.split, split_name):
                return ctx.refuse(
                    ResultCode.medfee_sumamt_mismatch,
                    f"input.data.{wire_name}: {value} differs from the engine's split",
                )
        return None


# The whole posting in one statement (one round trip): the journal entry, its
# postings, the settlement, the details marked settled, the new account balance
# (guarded by the old one) and the accumulators. Data-modifying CTEs all run; foreign
# keys are checked at the end of the statement and the entry's balance at commit.
POST_SETTLEMENT_SQL = """
WITH entry AS (
    INSERT INTO journal_entries (kind, insuplc_admdvs, setl_id, fixmedins_code, msgid)
    VALUES ('settle', $4, $1, $6, $10) RETURNING entry_id
), posted AS (
    INSERT INTO postings (entry_id, account, amount_fen)
    SELECT entry.entry_id, x.account, x.amount_fen
    FROM entry, unnest($27::text[], $28::bigint[]) AS x(account, amount_fen)
), settled AS (
    INSERT INTO settlements (setl_id, mdtrt_id, psn_no, insuplc_admdvs, mdtrtarea_admvs,
        fixmedins_code, insutype, med_type, year, msgid, state, setl_time,
        medfee_sumamt_fen, fulamt_ownpay_amt_fen, overlmt_selfpay_fen, preselfpay_amt_fen,
        inscp_scp_amt_fen, act_pay_dedc_fen, hifp_pay_fen, fund_pay_sumamt_fen,
        psn_part_amt_fen, acct_pay_fen, psn_cash_pay_fen, hosp_part_amt_fen,
        balc_before_fen, balc_fen, answer, entry_id)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'settled', $26, $11, $12, $13, $14, $15,
        $16, $17, $18, $19, $20, $21, $22, $23, $24, $25::jsonb, entry.entry_id
    FROM entry
), details AS (
    UPDATE fee_details SET setl_id = $1
    WHERE mdtrt_id = $2 AND feedetl_sn = ANY($29::text[]) AND setl_id IS NULL
    RETURNING 1
), balance AS (
    UPDATE persons SET acct_balance_fen = $24
    WHERE psn_no = $3 AND acct_balance_fen = $23 RETURNING 1
), accumulated AS (
    UPDATE person_accumulators
    SET deductible_used_fen = $30, outpatient_fund_paid_fen = $31, fund_paid_fen = $32
    WHERE psn_no = $3 AND year = $9 RETURNING 1
)
SELECT (SELECT count(*) FROM balance) AS balances,
       (SELECT count(*) FROM accumulated) AS accumulators,
       (SELECT count(*) FROM details) AS details
"""


class PostSettlement(Participant):
    name: ClassVar[str] = "post_settlement"

    async def commit(self, ctx: TxContext) -> None:
        sd: SettleData = ctx.data
        env, s, p = ctx.envelope, sd.split, sd.person
        conn, timeout_s = ctx.conn, ctx.services.command_timeout_s
        seq = await conn.fetchval("SELECT nextval('setl_id_seq')", timeout=timeout_s)
        setl_id = f"{p['insuplc_admdvs']}{ctx.now:%Y%m%d}{seq:012d}"
        postings = ledger.settlement_postings(
            insuplc=p["insuplc_admdvs"],
            insutype=p["insutype"],
            psn_no=p["psn_no"],
            fixmedins_code=env.fixmedins_code,
            fund_fen=s.fund_pay_sumamt_fen,
            acct_fen=s.acct_pay_fen,
            cash_fen=s.psn_cash_pay_fen,
        )
        output = setl_output(ctx, sd, setl_id, ctx.now)
        acc = s.accumulators_after
        written = await conn.fetchrow(
            POST_SETTLEMENT_SQL,
            setl_id,
            sd.visit["mdtrt_id"],
            p["psn_no"],
            p["insuplc_admdvs"],
            env.mdtrtarea_admvs,
            env.fixmedins_code,
            p["insutype"],
            ctx.input.data.med_type,
            acc.year,
            env.msgid,
            s.medfee_sumamt_fen,
            s.fulamt_ownpay_amt_fen,
            s.overlmt_selfpay_fen,
            s.preselfpay_amt_fen,
            s.inscp_scp_amt_fen,
            s.act_pay_dedc_fen,
            s.hifp_pay_fen,
            s.fund_pay_sumamt_fen,
            s.psn_part_amt_fen,
            s.acct_pay_fen,
            s.psn_cash_pay_fen,
            s.hosp_part_amt_fen,
            s.balc_before_fen,
            s.balc_fen,
            msgspec.json.encode(output).decode(),
            ctx.now,
            [x.account for x in postings],
            [x.amount_fen for x in postings],
            [d.feedetl_sn for d in sd.details],
            acc.deductible_used_fen,
            acc.outpatient_fund_paid_fen,
            acc.fund_paid_fen,
            timeout=timeout_s,
        )
        assert written is not None
        invariant(
            (written["balances"], written["accumulators"], written["details"])
            == (1, 1, len(sd.details)),
            f"settlement {setl_id}: a locked row changed under its lock ({dict(written)})",
        )
        ctx.output = output
        ctx.money_moved = ("settle", s.fund_pay_sumamt_fen, s.acct_pay_fen, s.psn_cash_pay_fen)


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


SPEC = TxSpec(
    infno=tx2207.INFNO,
    name=tx2207.NAME,
    input_type=tx2207.Input,
    output_type=tx2207.Output,
    participants=(
        DecodeInput(tx2207.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        PrepareSettlement(lock=True),
        CheckHisTotals(),
        PostSettlement(),
    ),
    mutating=True,
)
