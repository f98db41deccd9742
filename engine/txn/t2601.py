"""2601 reversal: undo a request whose answer was lost, named by its msgid
(DOMAIN.md §2.9). A 2207 that committed is cancelled exactly as 2208 would
(engine.txn.cancel) and its msgid is marked reversed, so an identical resend is
refused rather than answered with the stale settlement; a msgid that never arrived
gets a tombstone in the idempotency log, so the late original is refused. Reversing
twice answers `already_reversed` (idempotent from the institution's view)."""

from __future__ import annotations

from typing import ClassVar, Literal

from engine.txn.cancel import CancelData, lock_for_cancel, post_cancellation
from engine.txn.common import ClaimMsgid, DecodeInput, RequireInsuredRegion, RequireSignIn
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant, TxSpec
from terminals.messages import tx2601
from terminals.results import ResultCode

_ZERO_HASH = bytes(32)  # a tombstone has no body


class Reverse(Participant):
    name: ClassVar[str] = "reverse"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        data: tx2601.Data = ctx.input.data
        env, timeout_s = ctx.envelope, ctx.services.command_timeout_s
        if data.oinfno not in tx2601.REVERSIBLE:
            if data.oinfno in tx2601.NATIONALLY_REVERSIBLE:
                return ctx.refuse(
                    ResultCode.reversal_not_supported,
                    f"input.data.oinfno: reversing {data.oinfno} is not supported yet",
                )
            return ctx.refuse(
                ResultCode.field_invalid, f"input.data.oinfno: {data.oinfno} is not reversible"
            )
        if data.omsgid == env.msgid:
            return ctx.refuse(
                ResultCode.field_invalid, "input.data.omsgid: a request cannot reverse itself"
            )
        # Either leave a tombstone (the original never arrived) or find the original;
        # an original still in flight is waited for by the unique key.
        tombstoned = await ctx.conn.fetchval(
            "INSERT INTO tx_log (fixmedins_code, msgid, infno, request_sha256, tombstone, reversed_by_msgid)"
            " VALUES ($1, $2, $3, $4, true, $5) ON CONFLICT DO NOTHING RETURNING true",
            env.fixmedins_code,
            data.omsgid,
            data.oinfno,
            _ZERO_HASH,
            env.msgid,
            timeout=timeout_s,
        )
        if tombstoned:
            return self._answer(ctx, "tombstoned", None)
        original = await ctx.conn.fetchrow(
            "SELECT infno, tombstone, reversed_by_msgid FROM tx_log"
            " WHERE fixmedins_code = $1 AND msgid = $2 FOR UPDATE",
            env.fixmedins_code,
            data.omsgid,
            timeout=timeout_s,
        )
        assert original is not None  # the insert above conflicted with it
        if original["infno"] != data.oinfno:
            return ctx.refuse(
                ResultCode.field_invalid,
                f"input.data.oinfno: {data.omsgid} was a {original['infno']}, not {data.oinfno}",
            )
        settlement = await ctx.conn.fetchrow(
            "SELECT setl_id, mdtrt_id, psn_no, state FROM settlements"
            " WHERE fixmedins_code = $1 AND msgid = $2",
            env.fixmedins_code,
            data.omsgid,
            timeout=timeout_s,
        )
        if original["tombstone"] or original["reversed_by_msgid"] is not None:
            setl_id = settlement["setl_id"] if settlement is not None else None
            return self._answer(ctx, "already_reversed", setl_id)
        assert settlement is not None  # a committed 2207 claim always has its settlement
        if settlement["psn_no"] != data.psn_no:
            return ctx.refuse(
                ResultCode.reversal_person_mismatch,
                f"input.data.psn_no: {data.omsgid} settled another person",
            )
        if settlement["state"] == "cancelled":  # cancelled by 2208 before this reversal
            await self._mark_reversed(ctx)
            return self._answer(ctx, "already_reversed", settlement["setl_id"])
        locked = await lock_for_cancel(
            ctx, settlement["setl_id"], settlement["mdtrt_id"], data.psn_no, "input.data"
        )
        if isinstance(locked, ResultCode):
            return locked
        ctx.data = locked
        return None

    async def commit(self, ctx: TxContext) -> None:
        if ctx.output is not None:  # nothing to post: tombstone or already reversed
            return
        cd: CancelData = ctx.data
        await post_cancellation(ctx, cd)
        await self._mark_reversed(ctx)
        self._answer(ctx, "reversed", cd.settlement["setl_id"])

    @staticmethod
    async def _mark_reversed(ctx: TxContext) -> None:
        data: tx2601.Data = ctx.input.data
        await ctx.conn.execute(
            "UPDATE tx_log SET reversed_by_msgid = $3 WHERE fixmedins_code = $1 AND msgid = $2",
            ctx.envelope.fixmedins_code,
            data.omsgid,
            ctx.envelope.msgid,
            timeout=ctx.services.command_timeout_s,
        )

    @staticmethod
    def _answer(
        ctx: TxContext,
        rslt: Literal["reversed", "already_reversed", "tombstoned"],
        setl_id: str | None,
    ) -> None:
        data: tx2601.Data = ctx.input.data
        ctx.output = tx2601.Output(
            data=tx2601.ReversalOut(
                omsgid=data.omsgid, oinfno=data.oinfno, rslt=rslt, setl_id=setl_id
            )
        )


SPEC = TxSpec(
    infno=tx2601.INFNO,
    name=tx2601.NAME,
    input_type=tx2601.Input,
    output_type=tx2601.Output,
    participants=(
        DecodeInput(tx2601.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        Reverse(),
    ),
    mutating=True,
)
