"""2201 门诊挂号 outpatient registration (INFNO 2201): opens a visit for an insured
person at this institution and answers its `mdtrt_id`. One open visit per outpatient
number: the load says whether it is taken, and the unique index guards the race."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.txn.card.credential import presented
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.wire import field_refusal, wire_datetime
from settlement.money import MoneyError
from settlement.outpatient import RegisterDecision, RegisterLoad, RegisterRequest, decide_register
from settlement.refusals import Refused
from terminals.messages.outpatient import register as register_msg

INFNO = register_msg.INFNO


class Register(Flow[RegisterRequest, RegisterLoad, RegisterDecision]):
    load_function: ClassVar[str] = "yk_load_outpatient_register"
    write_function: ClassVar[str | None] = "yk_write_outpatient_register"
    load_type = RegisterLoad

    def request(self, ctx: TxContext, inp: Any) -> RegisterRequest | Refused:
        data: register_msg.Data = inp.data
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
            presented=presented(ctx, data.mdtrt_cert_type, data.yk_cred_ref, data.psn_no),
        )

    def load_args(self, ctx: TxContext, req: RegisterRequest) -> tuple[Any, ...]:
        return (
            ctx.envelope.fixmedins_code,
            req.psn_no,
            req.ipt_otp_no,
            req.insuplc_admdvs,
            req.presented.cred_ref,
        )

    def decide(
        self, ctx: TxContext, req: RegisterRequest, load: RegisterLoad
    ) -> RegisterDecision | Refused:
        return decide_register(req, load, ctx.services.policies, ctx.now)

    def output(
        self, ctx: TxContext, req: RegisterRequest, load: RegisterLoad, d: RegisterDecision
    ) -> register_msg.Output:
        return register_msg.Output(
            data=register_msg.RegOut(
                mdtrt_id=d.mdtrt_id, psn_no=req.psn_no, ipt_otp_no=req.ipt_otp_no
            )
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: RegisterRequest,
        load: RegisterLoad,
        d: RegisterDecision,
        output: register_msg.Output,
    ) -> dict[str, Any]:
        data: register_msg.Data = ctx.input.data
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
