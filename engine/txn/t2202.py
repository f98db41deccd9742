"""2202 cancel registration: closes a visit that has no live settlement; its
unsettled fee details are removed with it."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.common import (
    ClaimMsgid,
    DecodeInput,
    RequireInsuredRegion,
    RequireSignIn,
    check_visit,
    fetch_visit,
)
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx2202
from terminals.results import ResultCode


class CancelRegistration(Participant):
    name: ClassVar[str] = "cancel_registration"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2202.Data = ctx.input.data
        visit = await fetch_visit(ctx, data.mdtrt_id, lock=True)
        refused = check_visit(ctx, visit, data.mdtrt_id, data.psn_no)
        if refused is not None:
            return refused
        assert visit is not None
        if visit["ipt_otp_no"] != data.ipt_otp_no:
            return ctx.refuse(
                ResultCode.field_invalid,
                f"input.data.ipt_otp_no: {data.ipt_otp_no} is not the number of {data.mdtrt_id}",
            )
        live = await ctx.conn.fetchval(
            "SELECT setl_id FROM settlements WHERE mdtrt_id = $1 AND state = 'settled'",
            data.mdtrt_id,
            timeout=ctx.services.command_timeout_s,
        )
        if live is not None:
            return ctx.refuse(
                ResultCode.visit_has_settlement,
                f"input.data.mdtrt_id: settlement {live} must be cancelled first (2208)",
            )
        return None

    async def commit(self, ctx: TxContext) -> None:
        data: tx2202.Data = ctx.input.data
        timeout_s = ctx.services.command_timeout_s
        await ctx.conn.execute(
            "DELETE FROM fee_details WHERE mdtrt_id = $1 AND setl_id IS NULL",
            data.mdtrt_id,
            timeout=timeout_s,
        )
        await ctx.conn.execute(
            "UPDATE visits SET state = 'cancelled', cancelled_at = now() WHERE mdtrt_id = $1",
            data.mdtrt_id,
            timeout=timeout_s,
        )
        ctx.output = tx2202.Output()


SPEC = TxSpec(
    infno=tx2202.INFNO,
    name=tx2202.NAME,
    input_type=tx2202.Input,
    output_type=tx2202.Output,
    participants=(
        DecodeInput(tx2202.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        CancelRegistration(),
    ),
    mutating=True,
)
