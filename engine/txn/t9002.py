"""9002 sign-out: closes the operator's sign-in; its `sign_no` is refused afterwards."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.common import ClaimMsgid, DecodeInput, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx9002
from terminals.results import ResultCode


class SignOut(Participant):
    name: ClassVar[str] = "sign_out"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx9002.SignOutData = ctx.input.signOut
        if data.sign_no != ctx.envelope.sign_no:
            return ctx.refuse(ResultCode.field_invalid, "input.signOut.sign_no: must equal sign_no")
        if data.opter_no != ctx.envelope.opter:
            return ctx.refuse(ResultCode.field_invalid, "input.signOut.opter_no: must equal opter")
        return None

    async def commit(self, ctx: TxContext) -> None:
        await ctx.conn.execute(
            "UPDATE sign_ins SET signed_out_at = now() WHERE sign_no = $1",
            ctx.envelope.sign_no,
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx9002.Output(
            signoutoutb=tx9002.SignOutOut(
                sign_time=f"{ctx.now:%Y-%m-%d %H:%M:%S}", sign_no=ctx.envelope.sign_no
            )
        )


SPEC = TxSpec(
    infno=tx9002.INFNO,
    name=tx9002.NAME,
    input_type=tx9002.Input,
    output_type=tx9002.Output,
    participants=(DecodeInput(tx9002.Input), RequireSignIn(), ClaimMsgid(), SignOut()),
    mutating=True,
)
