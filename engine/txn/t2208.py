"""2208 cancel settlement by its setl_id (engine.txn.cancel does the work): returns
the settlement's answer with every amount negated and the balance after the refund."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.cancel import CancelData, lock_for_cancel, post_cancellation
from engine.txn.common import ClaimMsgid, DecodeInput, RequireInsuredRegion, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx2208
from terminals.results import ResultCode


class CancelSettlement(Participant):
    name: ClassVar[str] = "cancel_settlement"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2208.Data = ctx.input.data
        locked = await lock_for_cancel(ctx, data.setl_id, data.mdtrt_id, data.psn_no, "input.data")
        if isinstance(locked, ResultCode):
            return locked
        ctx.data = locked
        return None

    async def commit(self, ctx: TxContext) -> None:
        cd: CancelData = ctx.data
        await post_cancellation(ctx, cd)


SPEC = TxSpec(
    infno=tx2208.INFNO,
    name=tx2208.NAME,
    input_type=tx2208.Input,
    output_type=tx2208.Output,
    participants=(
        DecodeInput(tx2208.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        CancelSettlement(),
    ),
    mutating=True,
)
