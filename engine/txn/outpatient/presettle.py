"""2206 门诊预结算 outpatient pre-settlement (INFNO 2206): the split 2207 would post,
posting nothing. Read-only: its load runs in autocommit, without row locks."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.invariant import InvariantViolation
from engine.txn.card.credential import presented
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.outpatient.answers import setl_output
from engine.txn.wire import field_refusal
from settlement.money import MoneyError, yuan_to_fen
from settlement.outpatient import (
    HIS_TOTALS,
    Institution,
    SettleDecision,
    SettleLoad,
    SettleRequest,
    decide_settle,
)
from settlement.policy import Level
from settlement.refusals import Refused
from terminals.messages import setl
from terminals.messages.outpatient import presettle as presettle_msg

INFNO = presettle_msg.INFNO


def settle_request(ctx: TxContext, data: Any, *, his_totals: bool) -> SettleRequest | Refused:
    """The domain's request from a 2206/2207 `data`: money to fen (a third decimal or an
    impossible amount is a field error naming the field)."""
    try:
        medfee_fen = yuan_to_fen(data.medfee_sumamt, "data.medfee_sumamt")
        totals: dict[str, int] = {}
        if his_totals:
            for wire_name, _ in HIS_TOTALS:
                value = getattr(data, wire_name)
                if value is not None:
                    totals[wire_name] = yuan_to_fen(value, f"data.{wire_name}")
    except MoneyError as exc:
        return field_refusal(exc)
    return SettleRequest(
        mdtrt_id=data.mdtrt_id,
        psn_no=data.psn_no,
        insutype=data.insutype,
        insuplc_admdvs=ctx.envelope.insuplc_admdvs,
        mdtrtarea_admvs=ctx.envelope.mdtrtarea_admvs,
        med_type=data.med_type,
        medfee_sumamt_fen=medfee_fen,
        acct_used=data.acct_used_flag == "1",
        his_totals_fen=totals,
        chrg_bchno=getattr(data, "chrg_bchno", ""),
        # 2207 moves money: its credential must be proven (2206 only shows the split).
        presented=(
            presented(ctx, data.mdtrt_cert_type, data.yk_cred_ref, data.psn_no)
            if his_totals
            else None
        ),
    )


def institution(ctx: TxContext) -> Institution:
    t = ctx.terminal
    return Institution(fixmedins_code=t.fixmedins_code, level=Level(t.level), inst_type=t.inst_type)


class PreSettle(Flow[SettleRequest, SettleLoad, SettleDecision]):
    load_function: ClassVar[str] = "yk_load_outpatient_settle"
    load_type = SettleLoad
    lock: ClassVar[bool] = False
    his_totals: ClassVar[bool] = False

    def request(self, ctx: TxContext, inp: Any) -> SettleRequest | Refused:
        return settle_request(ctx, inp.data, his_totals=self.his_totals)

    def load_args(self, ctx: TxContext, req: SettleRequest) -> tuple[Any, ...]:
        cred_ref = req.presented.cred_ref if req.presented is not None else ""
        return (
            req.mdtrt_id,
            req.psn_no,
            ctx.now.year,
            req.chrg_bchno,
            self.lock,
            req.insuplc_admdvs,
            cred_ref,
            req.mdtrtarea_admvs,
            ctx.now.date(),
        )

    def decide(
        self, ctx: TxContext, req: SettleRequest, load: SettleLoad
    ) -> SettleDecision | Refused:
        return decide_settle(req, load, ctx.services.policies, institution(ctx), ctx.now)

    def output(
        self, ctx: TxContext, req: SettleRequest, load: SettleLoad, decision: SettleDecision
    ) -> setl.Output:
        person, visit = load.person, load.visit
        if person is None or visit is None:  # decide_settle refuses both
            raise InvariantViolation("a settlement decided without its person or visit")
        return setl_output(
            person,
            visit,
            decision,
            med_type=req.med_type,
            msgid=ctx.envelope.msgid,
            setl_time=ctx.now,
        )


FLOW = PreSettle()
