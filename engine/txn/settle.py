"""Shared steps of 2206 (pre-settle) and 2207 (settle): gather the visit's unsettled
details, the person, the year's accumulators and the policy, and adjudicate.

2207 locks in a fixed order — visit, person, accumulators — so that concurrent
settlements of one person queue on the person's row and each sees the balance and
accumulators the previous one left; they can neither overdraw the account nor pass
the cap (the database CHECKs on those rows would refuse it anyway)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg

from engine.txn.common import (
    check_person_region,
    check_visit,
    fetch_person,
    fetch_visit,
    money_message,
)
from engine.txn.context import TxContext
from engine.txn.people import age_on, psn_type
from engine.txn.pipeline import Participant
from settlement.adjudication import Accumulators, Benefit, PersonFacts, SettlementSplit, adjudicate
from settlement.catalog import DetailSplit, ItemClass
from settlement.money import MoneyError, fen_to_yuan, yuan_to_fen
from settlement.policy import Level, PolicyNotFound, PolicyParams
from terminals.messages import setl
from terminals.results import ResultCode

PHARMACY_MED_TYPES = frozenset({"41"})


@dataclass(frozen=True)
class SettleData:
    visit: asyncpg.Record
    person: asyncpg.Record
    policy: PolicyParams
    accumulators: Accumulators
    split: SettlementSplit
    benefit: Benefit
    details: tuple[DetailSplit, ...]


def _detail(row: asyncpg.Record) -> DetailSplit:
    return DetailSplit(
        feedetl_sn=row["feedetl_sn"],
        det_item_fee_sumamt_fen=row["det_item_fee_sumamt_fen"],
        fulamt_ownpay_amt_fen=row["fulamt_ownpay_amt_fen"],
        overlmt_amt_fen=row["overlmt_amt_fen"],
        preselfpay_amt_fen=row["preselfpay_amt_fen"],
        inscp_scp_amt_fen=row["inscp_scp_amt_fen"],
        pric_uplmt_amt_fen=row["pric_uplmt_amt_fen"],
        selfpay_prop_bp=row["selfpay_prop_bp"],
        chrgitm_lv=ItemClass(row["chrgitm_lv"]),
        memo=row["memo"],
    )


async def load_accumulators(
    ctx: TxContext, person: asyncpg.Record, policy: PolicyParams, year: int, *, lock: bool
) -> Accumulators:
    """The person's accumulators for `year`, opened with the policy's limits if new."""
    timeout_s = ctx.services.command_timeout_s
    if lock:
        # One round trip: open the row if new, lock it and read it. The no-op DO UPDATE
        # is what locks an existing row and makes RETURNING give it back.
        retired = person["retired"]
        out = policy.outpatient
        row = await ctx.conn.fetchrow(
            "INSERT INTO person_accumulators (psn_no, year, insuplc_admdvs, deductible_fen,"
            " outpatient_limit_fen, annual_cap_fen) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (psn_no, year) DO UPDATE SET psn_no = EXCLUDED.psn_no RETURNING *",
            person["psn_no"],
            year,
            person["insuplc_admdvs"],
            out.deductible_fen_retired if retired else out.deductible_fen_employed,
            out.annual_limit_fen_retired if retired else out.annual_limit_fen_employed,
            policy.fund_annual_cap_fen,
            timeout=timeout_s,
        )
    else:
        row = await ctx.conn.fetchrow(
            "SELECT * FROM person_accumulators WHERE psn_no = $1 AND year = $2",
            person["psn_no"],
            year,
            timeout=timeout_s,
        )
    if row is None:
        return Accumulators(
            year=year, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0
        )
    return Accumulators(
        year=year,
        deductible_used_fen=row["deductible_used_fen"],
        outpatient_fund_paid_fen=row["outpatient_fund_paid_fen"],
        fund_paid_fen=row["fund_paid_fen"],
    )


class PrepareSettlement(Participant):
    """Everything 2206 and 2207 check and compute; 2207 takes row locks (`lock`)."""

    name: ClassVar[str] = "prepare_settlement"

    def __init__(self, *, lock: bool) -> None:
        self._lock = lock

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: Any = ctx.input.data
        timeout_s = ctx.services.command_timeout_s
        try:
            medfee_fen = yuan_to_fen(data.medfee_sumamt, "data.medfee_sumamt")
        except MoneyError as exc:
            return ctx.refuse(ResultCode.field_invalid, money_message(exc, "input"))
        visit = await fetch_visit(ctx, data.mdtrt_id, lock=self._lock)
        refused = check_visit(ctx, visit, data.mdtrt_id, data.psn_no)
        if refused is not None:
            return refused
        assert visit is not None
        person = await fetch_person(ctx, data.psn_no, lock=self._lock)
        if person is None:
            return ctx.refuse(
                ResultCode.person_not_found, f"input.data.psn_no: {data.psn_no} not found"
            )
        refused = check_person_region(ctx, person)
        if refused is not None:
            return refused
        if data.insutype != visit["insutype"]:
            return ctx.refuse(
                ResultCode.insutype_not_held,
                f"input.data.insutype: the visit is under {visit['insutype']}, not {data.insutype}",
            )
        live = await ctx.conn.fetchval(
            "SELECT setl_id FROM settlements WHERE mdtrt_id = $1 AND state = 'settled'",
            data.mdtrt_id,
            timeout=timeout_s,
        )
        if live is not None:
            return ctx.refuse(
                ResultCode.visit_already_settled, f"input.data.mdtrt_id: already settled as {live}"
            )
        rows = await ctx.conn.fetch(
            "SELECT * FROM fee_details WHERE mdtrt_id = $1 AND setl_id IS NULL"
            " AND ($2 = '' OR chrg_bchno = $2) ORDER BY feedetl_sn",
            data.mdtrt_id,
            data.chrg_bchno,
            timeout=timeout_s,
        )
        if not rows:
            return ctx.refuse(
                ResultCode.fee_details_none_unsettled,
                "input.data.mdtrt_id: no unsettled fee details",
            )
        details = tuple(_detail(r) for r in rows)
        total_fen = sum(d.det_item_fee_sumamt_fen for d in details)
        if total_fen != medfee_fen:
            return ctx.refuse(
                ResultCode.medfee_sumamt_mismatch,
                f"input.data.medfee_sumamt: {data.medfee_sumamt} differs from the uploaded"
                f" details' total {fen_to_yuan(total_fen)}",
            )
        year = ctx.now.year
        try:
            policy = ctx.services.policies.get(person["insuplc_admdvs"], person["insutype"], year)
        except PolicyNotFound as exc:
            return ctx.refuse(ResultCode.policy_not_found, f"insuplc_admdvs: {exc}")
        # The envelope's institution is the terminal's (checked at the edge), so its
        # level and type come with the cached terminal row.
        terminal = ctx.terminal
        benefit = (
            Benefit.pharmacy
            if terminal.inst_type == "pharmacy" or data.med_type in PHARMACY_MED_TYPES
            else Benefit.outpatient
        )
        acc = await load_accumulators(ctx, person, policy, year, lock=self._lock)
        split = adjudicate(
            details,
            PersonFacts(
                insutype=person["insutype"],
                retired=person["retired"],
                acct_balance_fen=person["acct_balance_fen"],
            ),
            acc,
            policy,
            Level(terminal.level),
            benefit,
            data.acct_used_flag == "1",
        )
        ctx.data = SettleData(visit, person, policy, acc, split, benefit, details)
        return None


def setl_output(
    ctx: TxContext, sd: SettleData, setl_id: str | None, setl_time: dt.datetime
) -> setl.Output:
    """The setlinfo/setldetail answer of a (pre-)settlement."""
    s, p, v = sd.split, sd.person, sd.visit
    y = fen_to_yuan

    info = setl.SetlInfo(
        mdtrt_id=v["mdtrt_id"],
        setl_id=setl_id,
        psn_no=p["psn_no"],
        psn_name=p["psn_name"],
        psn_cert_type=p["psn_cert_type"],
        certno=p["certno"],
        gend=p["gend"],
        naty=p["naty"],
        brdy=p["brdy"].isoformat(),
        age=age_on(p["brdy"], setl_time.date()),
        insutype=p["insutype"],
        psn_type=psn_type(p),
        cvlserv_flag=p["cvlserv_flag"],
        mdtrt_cert_type=v["mdtrt_cert_type"],
        med_type=ctx.input.data.med_type,
        setl_time=f"{setl_time:%Y-%m-%d %H:%M:%S}",
        medfee_sumamt=y(s.medfee_sumamt_fen),
        fulamt_ownpay_amt=y(s.fulamt_ownpay_amt_fen),
        overlmt_selfpay=y(s.overlmt_selfpay_fen),
        preselfpay_amt=y(s.preselfpay_amt_fen),
        inscp_scp_amt=y(s.inscp_scp_amt_fen),
        act_pay_dedc=y(s.act_pay_dedc_fen),
        hifp_pay=y(s.hifp_pay_fen),
        pool_prop_selfpay=y(0),
        cvlserv_pay=y(s.cvlserv_pay_fen),
        hifes_pay=y(s.hifes_pay_fen),
        hifmi_pay=y(s.hifmi_pay_fen),
        hifob_pay=y(s.hifob_pay_fen),
        hifdm_pay=y(s.hifdm_pay_fen),
        maf_pay=y(s.maf_pay_fen),
        oth_pay=y(s.oth_pay_fen),
        fund_pay_sumamt=y(s.fund_pay_sumamt_fen),
        psn_part_amt=y(s.psn_part_amt_fen),
        acct_pay=y(s.acct_pay_fen),
        acct_mulaid_pay=y(s.acct_mulaid_pay_fen),
        psn_cash_pay=y(s.psn_cash_pay_fen),
        hosp_part_amt=y(s.hosp_part_amt_fen),
        balc=y(s.balc_fen),
        medins_setl_id=ctx.envelope.msgid,
        clr_optins=p["insuplc_admdvs"],
        clr_way="1",
        clr_type="41" if sd.benefit is Benefit.pharmacy else "11",
    )
    detail = [
        setl.SetlDetail(
            fund_pay_type=r.fund_pay_type,
            fund_pay_type_name=r.fund_pay_type_name,
            inscp_scp_amt=y(r.inscp_scp_amt_fen),
            crt_payb_lmt_amt=fen_to_yuan(r.crt_payb_lmt_amt_fen),
            fund_payamt=y(r.fund_payamt_fen),
            setl_proc_info=r.setl_proc_info,
        )
        for r in s.setldetail
    ]
    return setl.Output(setlinfo=info, setldetail=detail)
