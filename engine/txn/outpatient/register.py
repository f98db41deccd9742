"""2201 门诊挂号 outpatient registration (INFNO 2201): opens a visit for an insured
person at this institution and answers its `mdtrt_id`. One open visit per outpatient
number: the load says whether it is taken, and the unique index guards the race."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.wire import field_refusal, wire_datetime
from settlement.money import MoneyError
from settlement.outpatient import RegisterDecision, RegisterLoad, RegisterRequest, decide_register
from settlement.refusals import Refused
from terminals.messages import tx2201

INFNO = tx2201.INFNO


class Register(Flow[RegisterRequest, RegisterLoad, RegisterDecision]):
    load_function: ClassVar[str] = "yk_load_outpatient_register"
    write_function: ClassVar[str | None] = "yk_write_outpatient_register"
    load_type = RegisterLoad

    def request(self, ctx: TxContext, inp: Any) -> RegisterRequest | Refused:
        data: tx2201.Data = inp.data
        try:
            wire_datetime(data.begntime, "data.begntime")
        except MoneyError as exc:
            return field_refusal(exc)
        env = ctx.envelope
        return RegisterRequest(
            psn_no=data.psn_no,
            insutype=data.insutype,
            insuplc_admdvs=env.insuplc_admdvs,
            mdtrtarea_admvs=env.mdtrtarea_admvs,
            ipt_otp_no=data.ipt_otp_no,
        )

    def load_args(self, ctx: TxContext, req: RegisterRequest) -> tuple[Any, ...]:
        return (ctx.envelope.fixmedins_code, req.psn_no, req.ipt_otp_no)

    def decide(
        self, ctx: TxContext, req: RegisterRequest, load: RegisterLoad
    ) -> RegisterDecision | Refused:
        return decide_register(req, load, ctx.now)

    def output(
        self, ctx: TxContext, req: RegisterRequest, load: RegisterLoad, d: RegisterDecision
    ) -> tx2201.Output:
        return tx2201.Output(
            data=tx2201.RegOut(mdtrt_id=d.mdtrt_id, psn_no=req.psn_no, ipt_otp_no=req.ipt_otp_no)
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: RegisterRequest,
        load: RegisterLoad,
        d: RegisterDecision,
        output: tx2201.Output,
    ) -> dict[str, Any]:
        data: tx2201.Data = ctx.input.data
        env = ctx.envelope
        return {
            "visit": {
                "mdtrt_id": d.mdtrt_id,
                "psn_no": req.psn_no,
                "insuplc_admdvs": req.insuplc_admdvs,
                "mdtrtarea_admvs": req.mdtrtarea_admvs,
                "fixmedins_code": env.fixmedins_code,
                "insutype": req.insutype,
                "ipt_otp_no": req.ipt_otp_no,
                "mdtrt_cert_type": data.mdtrt_cert_type,
                "begntime": data.begntime,
                "registration": msgspec.to_builtins(data),
                "state": d.state.value,
            }
        }


FLOW = Register()
