"""2203 就诊信息上传 outpatient visit information (INFNO 2203): the visit's medical type
and diagnoses, stored with the (locked) open visit. Also the shared load of the three
flows that change a visit without money: 2203 here, 2205 (fees_cancel.py) and 2202
(unregister.py)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.context import TxContext
from engine.txn.flow import Flow
from settlement.outpatient import VisitDecision, VisitLoad, VisitRequest, decide_visit_info
from settlement.refusals import Refused
from terminals.messages.outpatient import visit as visit_msg

INFNO = visit_msg.INFNO


class VisitFlow(Flow[VisitRequest, VisitLoad, VisitDecision]):
    """What 2202, 2203 and 2205 share: the load of the visit they change."""

    load_function: ClassVar[str] = "yk_load_outpatient_visit"
    load_type = VisitLoad
    output_type: ClassVar[type[msgspec.Struct]]  # each answers with an empty output

    def load_args(self, ctx: TxContext, req: VisitRequest) -> tuple[Any, ...]:
        return (req.mdtrt_id, req.chrg_bchno, req.every_batch)

    def output(
        self, ctx: TxContext, req: VisitRequest, load: VisitLoad, d: VisitDecision
    ) -> msgspec.Struct:
        return self.output_type()


class VisitInfo(VisitFlow):
    write_function: ClassVar[str | None] = "yk_write_outpatient_visit_info"
    output_type = visit_msg.Output

    def request(self, ctx: TxContext, inp: Any) -> VisitRequest | Refused:
        info: visit_msg.MdtrtInfo = inp.mdtrtinfo
        return VisitRequest(mdtrt_id=info.mdtrt_id, psn_no=info.psn_no)

    def decide(self, ctx: TxContext, req: VisitRequest, load: VisitLoad) -> VisitDecision | Refused:
        return decide_visit_info(req, load, ctx.envelope.fixmedins_code)

    def write_doc(
        self,
        ctx: TxContext,
        req: VisitRequest,
        load: VisitLoad,
        d: VisitDecision,
        output: msgspec.Struct,
    ) -> dict[str, Any]:
        body: visit_msg.Input = ctx.input
        return {
            "mdtrt_id": req.mdtrt_id,
            "med_type": body.mdtrtinfo.med_type,
            "visit_info": msgspec.to_builtins(body),
        }


FLOW = VisitInfo()
