"""2205 cancel fee details: removes the unsettled details of one charge batch, or
with `chrg_bchno` 0000 every unsettled detail of the visit. Settled details stay
until their settlement is cancelled (2208)."""

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
from terminals.messages import tx2205
from terminals.results import ResultCode


class CancelDetails(Participant):
    name: ClassVar[str] = "cancel_details"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2205.Data = ctx.input.data
        visit = await fetch_visit(ctx, data.mdtrt_id, lock=True)
        refused = check_visit(ctx, visit, data.mdtrt_id, data.psn_no)
        if refused is not None:
            return refused
        every = data.chrg_bchno == tx2205.ALL_BATCHES
        count = await ctx.conn.fetchval(
            "SELECT count(*) FROM fee_details WHERE mdtrt_id = $1 AND setl_id IS NULL"
            " AND ($2 OR chrg_bchno = $3)",
            data.mdtrt_id,
            every,
            data.chrg_bchno,
            timeout=ctx.services.command_timeout_s,
        )
        if count == 0:
            return ctx.refuse(
                ResultCode.fee_details_batch_not_found,
                f"input.data.chrg_bchno: no unsettled details in {data.chrg_bchno}",
            )
        return None

    async def commit(self, ctx: TxContext) -> None:
        data: tx2205.Data = ctx.input.data
        await ctx.conn.execute(
            "DELETE FROM fee_details WHERE mdtrt_id = $1 AND setl_id IS NULL"
            " AND ($2 OR chrg_bchno = $3)",
            data.mdtrt_id,
            data.chrg_bchno == tx2205.ALL_BATCHES,
            data.chrg_bchno,
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx2205.Output()


SPEC = TxSpec(
    infno=tx2205.INFNO,
    name=tx2205.NAME,
    input_type=tx2205.Input,
    output_type=tx2205.Output,
    participants=(
        DecodeInput(tx2205.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        CancelDetails(),
    ),
    mutating=True,
)
