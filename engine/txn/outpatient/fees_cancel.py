"""2205 门诊费用明细撤销 cancel unsettled fee details (INFNO 2205): one charge batch, or
with `0000` every unsettled detail of the (locked) open visit."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.context import TxContext
from engine.txn.outpatient.visit import VisitFlow
from settlement.outpatient import VisitDecision, VisitLoad, VisitRequest, decide_fees_cancel
from settlement.refusals import Refused
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg

INFNO = fees_cancel_msg.INFNO


class FeesCancel(VisitFlow):
    output_type = fees_cancel_msg.Output
    write_function: ClassVar[str | None] = "yk_write_outpatient_fees_cancel"

    def request(self, ctx: TxContext, inp: Any) -> VisitRequest | Refused:
        data: fees_cancel_msg.Data = inp.data
        every = data.chrg_bchno == fees_cancel_msg.ALL_BATCHES
        return VisitRequest(
            mdtrt_id=data.mdtrt_id,
            psn_no=data.psn_no,
            chrg_bchno=data.chrg_bchno,
            every_batch=every,
        )

    def decide(self, ctx: TxContext, req: VisitRequest, load: VisitLoad) -> VisitDecision | Refused:
        return decide_fees_cancel(req, load, ctx.envelope.fixmedins_code)

    def write_doc(
        self,
        ctx: TxContext,
        req: VisitRequest,
        load: VisitLoad,
        d: VisitDecision,
        output: msgspec.Struct,
    ) -> dict[str, Any]:
        return {
            "mdtrt_id": req.mdtrt_id,
            "chrg_bchno": req.chrg_bchno,
            "every_batch": req.every_batch,
        }


FLOW = FeesCancel()
