"""9001 sign-in: opens a sign-in session for a registered operator at this
institution and terminal; its `sign_no` is required on every later call."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.common import ClaimMsgid, DecodeInput
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx9001
from terminals.results import ResultCode


class SignIn(Participant):
    name: ClassVar[str] = "sign_in"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx9001.SignInData = ctx.input.signIn
        env = ctx.envelope
        if data.opter_no != env.opter:
            return ctx.refuse(ResultCode.field_invalid, "input.signIn.opter_no: must equal opter")
        known = await ctx.conn.fetchval(
            "SELECT true FROM operators WHERE fixmedins_code = $1 AND opter = $2",
            env.fixmedins_code,
            env.opter,
            timeout=ctx.services.command_timeout_s,
        )
        if not known:
            return ctx.refuse(
                ResultCode.operator_unknown,
                f"opter: {env.opter} is not an operator of {env.fixmedins_code}",
            )
        return None

    async def commit(self, ctx: TxContext) -> None:
        env = ctx.envelope
        seq = await ctx.conn.fetchval("SELECT nextval('sign_no_seq')")
        sign_no = f"{ctx.now:%Y%m%d%H%M%S}{seq:016d}"
        await ctx.conn.execute(
            "INSERT INTO sign_ins (sign_no, fixmedins_code, opter, terminal_id, signed_in_at)"
            " VALUES ($1, $2, $3, $4, now())",
            sign_no,
            env.fixmedins_code,
            env.opter,
            ctx.terminal.terminal_id,
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx9001.Output(
            signinoutb=tx9001.SignInOut(sign_time=f"{ctx.now:%Y-%m-%d %H:%M:%S}", sign_no=sign_no)
        )


SPEC = TxSpec(
    infno=tx9001.INFNO,
    name=tx9001.NAME,
    input_type=tx9001.Input,
    output_type=tx9001.Output,
    participants=(DecodeInput(tx9001.Input), ClaimMsgid(), SignIn()),
    mutating=True,
)
