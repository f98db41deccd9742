"""2202 门诊挂号撤销 cancel an outpatient registration (INFNO 2202): only without a live
settlement (2208 first); the visit's unsettled fee details go with it, and the visit
moves registered → cancelled at the engine's clock."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.context import TxContext
from engine.txn.outpatient.visit import VisitFlow
from settlement.outpatient import VisitDecision, VisitLoad, VisitRequest, decide_unregister
from settlement.refusals import Refused
from terminals.messages.outpatient import unregister as unregister_msg

INFNO = unregister_msg.INFNO


class Unregister(VisitFlow):
    output_type = unregister_msg.Output
    write_function: ClassVar[str | None] = "yk_write_outpatient_unregister"

    def request(self, ctx: TxContext, inp: Any) -> VisitRequest | Refused:
        data: unregister_msg.Data = inp.data
        return VisitRequest(mdtrt_id=data.mdtrt_id, psn_no=data.psn_no, ipt_otp_no=data.ipt_otp_no)

    def decide(self, ctx: TxContext, req: VisitRequest, load: VisitLoad) -> VisitDecision | Refused:
        return decide_unregister(req, load, ctx.envelope.fixmedins_code)

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
            "state": d.state.value,
            "cancelled_at": ctx.now.isoformat(),
        }


FLOW = Unregister()
