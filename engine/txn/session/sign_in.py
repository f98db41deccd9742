"""9001 签到 operator sign-in (INFNO 9001): opens a sign-in session for a registered
operator at this institution and terminal, and answers its `sign_no`, which every later
call carries. The one call that needs no sign-in: it creates it."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.txn.context import TxContext
from engine.txn.flow import Flow, wire_time
from settlement.refusals import Refused
from settlement.session import SignInDecision, SignInLoad, SignInRequest, decide_sign_in
from terminals.messages.session import sign_in as sign_in_msg

INFNO = sign_in_msg.INFNO


class SignIn(Flow[SignInRequest, SignInLoad, SignInDecision]):
    load_function: ClassVar[str] = "yk_load_session_sign_in"
    write_function: ClassVar[str | None] = "yk_write_session_sign_in"
    needs_sign_in: ClassVar[bool] = False
    load_type = SignInLoad

    def request(self, ctx: TxContext, inp: Any) -> SignInRequest | Refused:
        data: sign_in_msg.SignInData = inp.signIn
        env = ctx.envelope
        return SignInRequest(
            fixmedins_code=env.fixmedins_code, opter=env.opter, opter_no=data.opter_no
        )

    def load_args(self, ctx: TxContext, req: SignInRequest) -> tuple[Any, ...]:
        return (req.opter,)

    def decide(
        self, ctx: TxContext, req: SignInRequest, load: SignInLoad
    ) -> SignInDecision | Refused:
        return decide_sign_in(req, load, ctx.now)

    def output(
        self, ctx: TxContext, req: SignInRequest, load: SignInLoad, d: SignInDecision
    ) -> sign_in_msg.Output:
        return sign_in_msg.Output(
            signinoutb=sign_in_msg.SignInOut(sign_time=wire_time(ctx.now), sign_no=d.sign_no)
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: SignInRequest,
        load: SignInLoad,
        d: SignInDecision,
        output: sign_in_msg.Output,
    ) -> dict[str, Any]:
        return {
            "sign_in": {
                "sign_no": d.sign_no,
                "fixmedins_code": req.fixmedins_code,
                "opter": req.opter,
                "terminal_id": ctx.terminal.terminal_id,
                "signed_in_at": ctx.now.isoformat(),
            }
        }


FLOW = SignIn()
