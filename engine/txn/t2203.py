"""2203 visit info: records the medical type, main condition and diagnoses of an
open outpatient visit (a later 2203 replaces an earlier one)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

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
from terminals.messages import tx2203
from terminals.results import ResultCode


class RecordVisitInfo(Participant):
    name: ClassVar[str] = "record_visit_info"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        info: tx2203.MdtrtInfo = ctx.input.mdtrtinfo
        visit = await fetch_visit(ctx, info.mdtrt_id, lock=True)
        return check_visit(ctx, visit, info.mdtrt_id, info.psn_no)

    async def commit(self, ctx: TxContext) -> None:
        body: tx2203.Input = ctx.input
        await ctx.conn.execute(
            "UPDATE visits SET med_type = $2, visit_info = $3 WHERE mdtrt_id = $1",
            body.mdtrtinfo.mdtrt_id,
            body.mdtrtinfo.med_type,
            msgspec.json.encode(body).decode(),
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx2203.Output()


SPEC = TxSpec(
    infno=tx2203.INFNO,
    name=tx2203.NAME,
    input_type=tx2203.Input,
    output_type=tx2203.Output,
    participants=(
        DecodeInput(tx2203.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        RecordVisitInfo(),
    ),
    mutating=True,
)
