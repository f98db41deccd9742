"""9002 签退 operator sign-out (INFNO 9002): closes the open sign-in the call is made
under (open → signed_out at the engine's clock); its `sign_no` is refused afterwards.
The load locks the sign-in's row, so two sign-outs of one sign_no go one at a time."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.txn.context import TxContext
from engine.txn.flow import Flow, wire_time
from settlement.refusals import Refused
from settlement.session import SignOutDecision, SignOutLoad, SignOutRequest, decide_sign_out
from terminals.messages.session import sign_out as sign_out_msg

INFNO = sign_out_msg.INFNO


class SignOut(Flow[SignOutRequest, SignOutLoad, SignOutDecision]):
    load_function: ClassVar[str] = "yk_load_session_sign_out"
    write_function: ClassVar[str | None] = "yk_write_session_sign_out"
    load_type = SignOutLoad

    def request(self, ctx: TxContext, inp: Any) -> SignOutRequest | Refused:
        data: sign_out_msg.SignOutData = inp.signOut
        env = ctx.envelope
        return SignOutRequest(
            sign_no=env.sign_no,
            opter=env.opter,
            input_sign_no=data.sign_no,
            input_opter_no=data.opter_no,
        )

    def load_args(self, ctx: TxContext, req: SignOutRequest) -> tuple[Any, ...]:
        return (req.sign_no,)

    def decide(
        self, ctx: TxContext, req: SignOutRequest, load: SignOutLoad
    ) -> SignOutDecision | Refused:
        return decide_sign_out(req, load)

    def output(
        self, ctx: TxContext, req: SignOutRequest, load: SignOutLoad, d: SignOutDecision
    ) -> sign_out_msg.Output:
        return sign_out_msg.Output(
            signoutoutb=sign_out_msg.SignOutOut(sign_time=wire_time(ctx.now), sign_no=d.sign_no)
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: SignOutRequest,
        load: SignOutLoad,
        d: SignOutDecision,
        output: sign_out_msg.Output,
    ) -> dict[str, Any]:
        return {
            "sign_no": d.sign_no,
            "fixmedins_code": ctx.envelope.fixmedins_code,
            "signed_out_at": ctx.now.isoformat(),
        }


FLOW = SignOut()
