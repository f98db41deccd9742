"""2206 pre-settlement: the split 2207 would post, computed without locks and
without changing anything."""

from __future__ import annotations

from typing import ClassVar

from engine.txn.common import DecodeInput, RequireInsuredRegion, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant
from engine.txn.registry import TxSpec
from engine.txn.settle import PrepareSettlement, SettleData, setl_output
from terminals.messages import tx2206
from terminals.results import ResultCode


class Answer(Participant):
    name: ClassVar[str] = "answer"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        sd: SettleData = ctx.data
        ctx.output = setl_output(ctx, sd, None, ctx.now)
        return None


SPEC = TxSpec(
    infno=tx2206.INFNO,
    name=tx2206.NAME,
    input_type=tx2206.Input,
    output_type=tx2206.Output,
    participants=(
        DecodeInput(tx2206.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        PrepareSettlement(lock=False),
        Answer(),
    ),
    mutating=False,
)
