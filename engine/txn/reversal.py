"""2601 冲正交易 reversal (INFNO 2601): undo a request whose answer was lost, named by
its msgid (DOMAIN.md §2.9). A 2207 or 2102 that committed is cancelled exactly as 2208
or 2103 would (settlement.cancellation) and its msgid is marked reversed, so an
identical resend is refused rather than answered with the stale settlement; a 2208 or
2103 that committed is undone by putting its settlement back (decide_reinstate), unless
the visit, account or limits moved on since; a msgid that never arrived gets a
tombstone in the idempotency log, so the late original is refused. Reversing twice
answers `already_reversed` (idempotent from the institution's view). Which codes can be
reversed is the wire's list (terminals.messages.reversal), checked before any I/O."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.outpatient.cancel import cancel_doc, settlement_change_doc
from settlement.cancellation import (
    ReinstateDecision,
    ReversalDecision,
    ReversalLoad,
    ReversalRequest,
    decide_reversal,
)
from settlement.refusals import Refusal, Refused
from terminals.messages import reversal as reversal_msg

INFNO = reversal_msg.INFNO


class Reverse(Flow[ReversalRequest, ReversalLoad, ReversalDecision]):
    load_function: ClassVar[str] = "yk_load_reversal"
    write_function: ClassVar[str | None] = "yk_write_reversal"
    load_type = ReversalLoad

    def request(self, ctx: TxContext, inp: Any) -> ReversalRequest | Refused:
        data: reversal_msg.Data = inp.data
        if data.oinfno not in reversal_msg.REVERSIBLE:
            if data.oinfno in reversal_msg.NATIONALLY_REVERSIBLE:
                return Refused(
                    Refusal.reversal_not_supported,
                    f"input.data.oinfno: reversing {data.oinfno} is not supported yet",
                )
            return Refused(
                Refusal.field_invalid, f"input.data.oinfno: {data.oinfno} is not reversible"
            )
        if data.omsgid == ctx.envelope.msgid:
            return Refused(
                Refusal.field_invalid, "input.data.omsgid: a request cannot reverse itself"
            )
        return ReversalRequest(
            omsgid=data.omsgid,
            oinfno=data.oinfno,
            psn_no=data.psn_no,
            insuplc_admdvs=ctx.envelope.insuplc_admdvs,
            msgid=ctx.envelope.msgid,
        )

    def load_args(self, ctx: TxContext, req: ReversalRequest) -> tuple[Any, ...]:
        return (ctx.envelope.fixmedins_code, req.omsgid)

    def decide(
        self, ctx: TxContext, req: ReversalRequest, load: ReversalLoad
    ) -> ReversalDecision | Refused:
        return decide_reversal(req, load, ctx.envelope.fixmedins_code)

    def output(
        self, ctx: TxContext, req: ReversalRequest, load: ReversalLoad, d: ReversalDecision
    ) -> reversal_msg.Output:
        return reversal_msg.Output(
            data=reversal_msg.ReversalOut(
                omsgid=req.omsgid, oinfno=req.oinfno, rslt=d.result.value, setl_id=d.setl_id
            )
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: ReversalRequest,
        load: ReversalLoad,
        d: ReversalDecision,
        output: reversal_msg.Output,
    ) -> dict[str, Any]:
        return {
            "reversal": {
                "fixmedins_code": ctx.envelope.fixmedins_code,
                "omsgid": req.omsgid,
                "oinfno": req.oinfno,
                "msgid": req.msgid,
                "tombstone": d.tombstone,
                "mark_reversed": d.mark_reversed,
            },
            "cancel": cancel_doc(ctx, d.cancel) if d.cancel is not None else None,
            "reinstate": reinstate_doc(ctx, d.reinstate) if d.reinstate is not None else None,
        }

    def money(self, d: ReversalDecision) -> tuple[str, int, int, int] | None:
        if (c := d.cancel) is not None:  # a settlement reversed: money back as a cancel's
            return ("cancel", c.fund_fen, c.acct_fen, c.cash_fen)
        if (r := d.reinstate) is not None:  # a cancellation reversed: as a settlement's
            return ("settle", r.fund_fen, r.acct_fen, r.cash_fen)
        return None


def reinstate_doc(ctx: TxContext, d: ReinstateDecision) -> dict[str, Any]:
    """A decided reinstatement as yk_reinstate_settlement takes it."""
    return {
        **settlement_change_doc(ctx, d),
        "mdtrt_id": d.mdtrt_id,
        "cancel_msgid": d.cancel_msgid,
        "detail_count": d.detail_count,
    }


FLOW = Reverse()
