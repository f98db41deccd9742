"""Participants and the pipeline runner (after jPOS's TransactionManager).

A participant's `prepare(ctx)` returns None to go on or a ResultCode to stop the
transaction with that business outcome (`ctx.refuse(...)` sets the message). When every
participant has prepared, each one's `commit(ctx)` runs; if any refused, the ones that
prepared get `abort(ctx)`. Both are idempotent. The runner records one trace entry per
participant (name, verdict, elapsed ms) for logs.

State-changing transactions run all of this inside one database transaction opened by
the caller; a refusal rolls it back, so bad input changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.txn.context import TxContext
from terminals.results import ResultCode


class Participant:
    """Base participant: prepares, commits and aborts nothing."""

    name: ClassVar[str] = "participant"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        return None

    async def commit(self, ctx: TxContext) -> None:
        return None

    async def abort(self, ctx: TxContext) -> None:
        return None


async def run(participants: Sequence[Participant], ctx: TxContext) -> ResultCode:
    prepared: list[Participant] = []
    for participant in participants:
        started = time.perf_counter()
        verdict = await participant.prepare(ctx)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        ctx.trace.append(
            (participant.name, "prepared" if verdict is None else verdict.name, elapsed_ms)
        )
        if verdict is not None:
            for done in reversed(prepared):
                await done.abort(ctx)
            return verdict
        if ctx.replayed_answer is not None:
            return ResultCode.ok  # an identical repeat: the stored answer is the answer
        prepared.append(participant)
    for participant in prepared:
        started = time.perf_counter()
        await participant.commit(ctx)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        ctx.trace.append((participant.name, "committed", elapsed_ms))
    return ResultCode.ok


@dataclass(frozen=True)
class TxSpec:
    """One transaction code: its wire types and how it runs — a `flow` (load → decide →
    write, engine.txn.flow) or, for codes not yet moved onto that shape, participants."""

    infno: str
    name: str
    input_type: type[Any]
    output_type: type[Any]
    # State-changing transactions run in one database transaction and claim their
    # msgid for idempotency; read-only ones do neither.
    mutating: bool
    participants: tuple[Participant, ...] = ()
    flow: Any = None  # engine.txn.flow.Flow (Any: flow.py imports this module)
    names_person: bool = False  # the envelope must carry insuplc_admdvs
