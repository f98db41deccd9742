"""2208 门诊结算撤销 cancel an outpatient settlement by its setl_id (INFNO 2208): the
exact negation of its journal entry, the personal account refunded, the settlement
taken back out of the year's accumulators and its fee details freed; answered with the
settlement's own answer, every amount negated. The decision is
settlement.cancellation.decide_cancel; a settlement is cancelled at most once (its row
is locked and its state judged, and the write's WHERE on that state would refuse a
second)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.invariant import InvariantViolation
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.outpatient.answers import cancel_output
from settlement.cancellation import (
    CancelDecision,
    CancelLoad,
    CancelRequest,
    ReinstateDecision,
    decide_cancel,
)
from settlement.refusals import Refused
from terminals.messages import setl
from terminals.messages.outpatient import cancel as cancel_msg

INFNO = cancel_msg.INFNO


class CancelLoaded(msgspec.Struct, frozen=True):
    """What the load returns: the domain's part and the settlement's stored answer."""

    cancel: CancelLoad
    answer: setl.Output | None


def cancel_doc(ctx: TxContext, d: CancelDecision) -> dict[str, Any]:
    """A decided cancellation as yk_cancel_settlement takes it (2208 and 2601)."""
    return {**settlement_change_doc(ctx, d), "cancelled_at": ctx.now.isoformat()}


def settlement_change_doc(ctx: TxContext, d: CancelDecision | ReinstateDecision) -> dict[str, Any]:
    """What a cancellation and a reinstatement (2601 of a cancel) both write: the
    entry, the state move, the account and the accumulators, each with what the
    decision saw."""
    acc = d.accumulators_after
    return {
        "setl_id": d.setl_id,
        "fixmedins_code": ctx.envelope.fixmedins_code,
        "insuplc_admdvs": d.insuplc_admdvs,
        "msgid": d.msgid,
        "state_before": d.state_before.value,
        "state": d.state.value,
        "postings": [{"account": p.account, "amount_fen": p.amount_fen} for p in d.postings],
        "psn_no": d.psn_no,
        "balance_before_fen": d.balance_before_fen,
        "balance_after_fen": d.balance_after_fen,
        "accumulators": {
            "year": acc.year,
            "deductible_used_fen": acc.deductible_used_fen,
            "outpatient_fund_paid_fen": acc.outpatient_fund_paid_fen,
            "fund_paid_fen": acc.fund_paid_fen,
        },
    }


class CancelSettlement(Flow[CancelRequest, CancelLoaded, CancelDecision]):
    load_function: ClassVar[str] = "yk_load_settlement_cancel"
    write_function: ClassVar[str | None] = "yk_write_settlement_cancel"
    load_type = CancelLoaded
    pharmacy: ClassVar[bool] = False  # which settlements this code cancels

    def request(self, ctx: TxContext, inp: Any) -> CancelRequest | Refused:
        data: cancel_msg.Data = inp.data
        return CancelRequest(
            setl_id=data.setl_id,
            mdtrt_id=data.mdtrt_id,
            psn_no=data.psn_no,
            insuplc_admdvs=ctx.envelope.insuplc_admdvs,
            msgid=ctx.envelope.msgid,
            pharmacy=self.pharmacy,
        )

    def load_args(self, ctx: TxContext, req: CancelRequest) -> tuple[Any, ...]:
        return (req.setl_id, req.mdtrt_id)

    def decide(
        self, ctx: TxContext, req: CancelRequest, load: CancelLoaded
    ) -> CancelDecision | Refused:
        return decide_cancel(req, load.cancel, ctx.envelope.fixmedins_code)

    def output(
        self, ctx: TxContext, req: CancelRequest, load: CancelLoaded, d: CancelDecision
    ) -> setl.Output:
        if load.answer is None:  # decide_cancel refuses a missing settlement
            raise InvariantViolation(f"settlement {d.setl_id} cancelled without its answer")
        return cancel_output(
            load.answer, d.balance_after_fen, msgid=ctx.envelope.msgid, cancel_time=ctx.now
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: CancelRequest,
        load: CancelLoaded,
        d: CancelDecision,
        output: setl.Output,
    ) -> dict[str, Any]:
        return {"cancel": cancel_doc(ctx, d)}

    def money(self, d: CancelDecision) -> tuple[str, int, int, int]:
        return ("cancel", d.fund_fen, d.acct_fen, d.cash_fen)


FLOW = CancelSettlement()
