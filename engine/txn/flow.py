"""Load → decide → write: how every transaction on the core's shape runs (DESIGN.md §2).

    request  the decoded input turned into the domain's request (a field error refuses
             here, before any I/O)
    load     one SQL function call: the request's facts (nonce claimed, sign-in, the
             msgid's idempotency record) and the flow's rows, locked in the fixed
             order — decoded from PostgreSQL's JSON straight into typed Structs
    prove    optional: what only an outside party can say about the load (the HSM's
             verdict on a card's cryptogram or a token's signature), added to it
    decide   a pure function in settlement/: a refusal or a decision
    write    one SQL function call that claims the msgid, stores the answer and writes
             the decision's rows, sent with COMMIT in the same round trip

A state-changing request is BEGIN, load, write + COMMIT: three round trips. A read-only
one is its load alone, in autocommit. A refusal after the load COMMITs instead of
rolling back, which keeps the claimed nonce (the load changes nothing else), so a
refused request cannot be replayed into success later; an error in prove (the HSM down)
COMMITs the same way before it goes on. A decision that spends a credential and still
refuses (`spent_refusal`) is written, without a msgid claim, and answered as a refusal.

Idempotency is one step with two halves: `_idempotent` answers a msgid seen before from
the load (the stored answer for the same request, marked `replay` for the metrics; a
refusal for a different one), and the write's `tx` part claims the msgid together with
the answer. Two identical requests at once: the second's claim waits on the first's and
fails on its key; the runner then loads again and answers from the stored record.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg
import msgspec

from engine.invariant import invariant
from engine.txn.context import TxContext
from engine.txn.db import TxDb
from engine.txn.refusal_codes import REFUSAL_CODES
from settlement.adjudication import Benefit
from settlement.cancellation import CancelDecision, ReinstateDecision, ReversalDecision
from settlement.outpatient import SettleDecision
from settlement.pharmacy import PharmacyDecision
from settlement.refusals import Refused
from settlement.session import SignIn, check_signed_in
from terminals.results import ResultCode

R = TypeVar("R")  # the domain request
L = TypeVar("L")  # what the load returns for the flow
D = TypeVar("D")  # the decision

# Raised by the write when a concurrent identical request claimed the msgid first.
MSGID_CLAIM_CONSTRAINT = "tx_log_pkey"


class TxRecord(msgspec.Struct, frozen=True):
    """The msgid's row in the idempotency log, as the load found it."""

    infno: str
    request_sha256: str  # hex
    answer: str | None
    tombstone: bool
    reversed_by_msgid: str | None


class Loaded(msgspec.Struct, Generic[L], frozen=True):
    nonce_fresh: bool
    session: SignIn | None = None
    tx: TxRecord | None = None
    flow: L | None = None


class ClaimedConcurrently(Exception):
    """Another request with this msgid committed between our load and our write."""


class Moved(msgspec.Struct, frozen=True):
    """Money a decision moved, for the metrics (engine.metrics): `kind` as the flow's
    `money` says it (settle, cancel), whether the settlement it moved is a pharmacy
    one (clr_type 41), and the fen by payer."""

    kind: str
    pharmacy: bool
    fund_fen: int
    account_fen: int
    cash_fen: int


class Outcome(msgspec.Struct, frozen=True):
    """What the runner hands back to the HTTP layer."""

    code: ResultCode
    err_msg: str | None = None
    output: Any = None
    answer: bytes | None = None  # the exact bytes to send: a replay, or what the write stored
    status: int = 200
    replay: bool = False  # `answer` is the stored answer of a msgid seen before
    moved: Moved | None = None  # what a success moved


class CommitOutcomeUnknown(ConnectionError):
    """The line to PostgreSQL was lost after the write + COMMIT was sent: it may have
    committed. The caller looks the msgid up on another connection (`stored_answer`)
    before it tells the client anything; `outcome` is what the runner would have
    answered had the commit been heard (for the metrics, should it have committed)."""

    outcome: Outcome | None = None


class Flow(Generic[R, L, D]):
    """One transaction code on the core's shape; subclasses fill in the five parts."""

    load_function: ClassVar[str]
    write_function: ClassVar[str | None] = None  # None: read-only
    needs_sign_in: ClassVar[bool] = True
    load_type: type[Any]

    def request(self, ctx: TxContext, inp: Any) -> R | Refused:
        raise NotImplementedError

    def writes(self, req: R) -> bool:
        """Whether this request runs as a transaction (BEGIN, load, write + COMMIT) or
        as its load alone in autocommit. Default: the flow has a write. A flow whose
        write depends on the request says so per request (1101 by ID number spends
        nothing, by card it spends the challenge)."""
        return self.write_function is not None

    def load_args(self, ctx: TxContext, req: R) -> tuple[Any, ...]:
        raise NotImplementedError

    def decide(self, ctx: TxContext, req: R, load: L) -> D | Refused:
        raise NotImplementedError

    async def prove(self, ctx: TxContext, req: R, load: L) -> L:
        """The load with what only an outside party can say about it added, for decide
        (runs after the load's checks, its transaction open). Default: nothing, free."""
        return load

    def spent_refusal(self, decision: D) -> Refused | None:
        """The refusal a written decision still answers (the check that refused spent a
        credential); None, the default: the decision is a success."""
        return None

    def output(self, ctx: TxContext, req: R, load: L, decision: D) -> Any:
        raise NotImplementedError

    def write_doc(
        self, ctx: TxContext, req: R, load: L, decision: D, output: Any
    ) -> dict[str, Any]:
        """The decision's rows for the write function (the runner adds `tx`)."""
        return {}

    def money(self, decision: D) -> tuple[str, int, int, int] | None:
        """(kind, fund, account, cash) fen moved, for the metrics."""
        return None


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(flow_load: type[Any]) -> msgspec.json.Decoder[Any]:
    found = _decoders.get(flow_load)
    if found is None:
        found = _decoders[flow_load] = msgspec.json.Decoder(Loaded[flow_load])  # type: ignore[valid-type]
    return found


def refused(r: Refused) -> Outcome:
    return Outcome(REFUSAL_CODES[r.reason], r.message)


def _idempotent(ctx: TxContext, tx: TxRecord) -> Outcome:
    env = ctx.envelope
    if tx.reversed_by_msgid is not None:
        return Outcome(
            ResultCode.msgid_reversed,
            f"msgid: {env.msgid} was reversed by 2601 {tx.reversed_by_msgid}",
        )
    if tx.infno != env.infno or tx.request_sha256 != ctx.request_sha256.hex() or tx.answer is None:
        return Outcome(
            ResultCode.msgid_reused_with_different_body,
            f"msgid: {env.msgid} was already used for a different request",
        )
    return Outcome(ResultCode.ok, answer=tx.answer.encode(), replay=True)


async def claim_nonce_alone(db: TxDb, terminal_id: str, nonce: str, expires: dt.datetime) -> bool:
    """Claim a request's nonce on its own, in autocommit: for requests answered before
    a load would claim it (a field error, a transaction not yet on this shape), so that
    no signed request is ever accepted twice. False: a replay."""
    fresh = await db.fetchval(
        "SELECT yk_request_facts($1, $2, $3, '', '', '')->>'nonce_fresh'",
        terminal_id,
        nonce,
        expires,
    )
    return bool(fresh == "true")


async def claim_nonce(ctx: TxContext) -> bool:
    return await claim_nonce_alone(ctx.db, ctx.terminal.terminal_id, ctx.nonce, ctx.nonce_expires)


REPLAYED = Outcome(ResultCode.nonce_replayed, "X-Yk-Nonce: already used", status=401)


@functools.cache
def _load_sql(load_function: str, flow_args: int) -> str:
    """`SELECT load_function(yk_request_facts($1..$6), $7, ...)`: the request's six facts,
    then the flow's own arguments; built once per flow, not per request."""
    placeholders = "".join(f", ${i + 7}" for i in range(flow_args))
    return f"SELECT {load_function}(yk_request_facts($1, $2, $3, $4, $5, $6){placeholders})"


async def _load(flow: Flow[R, L, D], ctx: TxContext, req: R) -> Loaded[L]:
    args = flow.load_args(ctx, req)
    sql = _load_sql(flow.load_function, len(args))
    env = ctx.envelope
    raw = await ctx.db.fetchval(
        sql,
        ctx.terminal.terminal_id,
        ctx.nonce,
        ctx.nonce_expires,
        env.fixmedins_code,
        env.msgid if flow.write_function else "",
        env.sign_no if flow.needs_sign_in else "",
        *args,
    )
    loaded: Loaded[L] = _decoder(flow.load_type).decode(raw)
    return loaded


async def run(flow: Flow[R, L, D], ctx: TxContext, inp: Any, answer: Any) -> Outcome:
    """Run `flow` for the decoded input `inp`. `answer(output) -> bytes` renders the
    success answer the write stores (the HTTP layer's envelope)."""
    req = flow.request(ctx, inp)
    if isinstance(req, Refused):
        return refused(req) if await claim_nonce(ctx) else REPLAYED
    mutating = flow.writes(req)
    if mutating:
        await ctx.db.begin()
    loaded = await _load(flow, ctx, req)
    if not loaded.nonce_fresh:
        await ctx.db.rollback()
        return REPLAYED
    outcome = _checks(flow, ctx, loaded)
    if outcome is None and loaded.flow is not None:
        load = await _prove(flow, ctx, req, loaded.flow, mutating)
        decision = flow.decide(ctx, req, load)
        if isinstance(decision, Refused):
            outcome = refused(decision)
        elif (spent := flow.spent_refusal(decision)) is not None:
            if mutating:
                await _write_spent(flow, ctx, req, load, decision)
            return refused(spent)
        else:
            output = flow.output(ctx, req, load, decision)
            money = flow.money(decision)
            done = Outcome(ResultCode.ok, output=output, moved=_moved(money, decision))
            if mutating:
                try:
                    stored = await _write(flow, ctx, req, load, decision, output, answer)
                except CommitOutcomeUnknown as lost:
                    lost.outcome = done  # the caller may find that it committed
                    raise
                done = msgspec.structs.replace(done, answer=stored)
            return done
    invariant(outcome is not None, f"{flow.load_function} returned no flow part and no reason")
    if mutating:
        await ctx.db.commit()  # keeps the claimed nonce; nothing else was changed
    return outcome  # type: ignore[return-value]  # invariant() above


def _moved(money: tuple[str, int, int, int] | None, decision: object) -> Moved | None:
    """`Flow.money`'s tuple with whether the settlement it moved is a pharmacy one."""
    if money is None:
        return None
    kind, fund_fen, account_fen, cash_fen = money
    return Moved(kind, _pharmacy(decision), fund_fen, account_fen, cash_fen)


def _pharmacy(decision: object) -> bool:
    """Every money decision knows its settlement's benefit (2207 at a pharmacy or for
    med_type 41 is one too; a cancellation or reinstatement, the settlement's clr_type)."""
    if isinstance(decision, ReversalDecision):
        decision = decision.cancel or decision.reinstate
    if isinstance(decision, PharmacyDecision):
        decision = decision.settle
    if isinstance(decision, SettleDecision):
        return decision.benefit is Benefit.pharmacy
    if isinstance(decision, CancelDecision | ReinstateDecision):
        return decision.pharmacy
    return False


async def _prove(flow: Flow[R, L, D], ctx: TxContext, req: R, load: L, mutating: bool) -> L:
    try:
        return await flow.prove(ctx, req, load)
    except Exception:
        if mutating:
            await ctx.db.commit()  # keeps the claimed nonce, as a refusal does
        raise


def _checks(flow: Flow[R, L, D], ctx: TxContext, loaded: Loaded[L]) -> Outcome | None:
    env = ctx.envelope
    if flow.needs_sign_in:
        bad = check_signed_in(env.sign_no, env.opter, loaded.session)
        if bad is not None:
            return refused(bad)
    if loaded.tx is not None:
        return _idempotent(ctx, loaded.tx)
    return None


async def _write(
    flow: Flow[R, L, D],
    ctx: TxContext,
    req: R,
    load: L,
    decision: D,
    output: Any,
    answer: Any,
) -> bytes:
    env = ctx.envelope
    body: bytes = answer(output)
    doc = flow.write_doc(ctx, req, load, decision, output)
    doc["tx"] = {
        "fixmedins_code": env.fixmedins_code,
        "msgid": env.msgid,
        "infno": env.infno,
        "request_sha256": ctx.request_sha256.hex(),
        "answer": body.decode(),
    }
    await _write_and_commit(flow, ctx, doc)
    return body


async def _write_spent(flow: Flow[R, L, D], ctx: TxContext, req: R, load: L, decision: D) -> None:
    """A refused decision's rows, + COMMIT: no msgid claim, no stored answer."""
    await _write_and_commit(flow, ctx, flow.write_doc(ctx, req, load, decision, None))


async def _write_and_commit(flow: Flow[R, L, D], ctx: TxContext, doc: dict[str, Any]) -> None:
    """The flow's write function with `doc`, + COMMIT, in one round trip. A concurrent
    identical request that claimed the msgid first is ClaimedConcurrently; a line lost
    once this was sent is CommitOutcomeUnknown (it may have committed)."""
    msgid = ctx.envelope.msgid
    try:
        await ctx.db.write_and_commit(flow.write_function or "", msgspec.json.encode(doc).decode())
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == MSGID_CLAIM_CONSTRAINT:
            await ctx.db.rollback()
            raise ClaimedConcurrently(msgid) from exc
        raise
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise CommitOutcomeUnknown(msgid) from exc


async def stored_answer(conn: asyncpg.Connection, ctx: TxContext, timeout_s: float) -> bytes | None:
    """The answer stored for this very request (same msgid, transaction and input), or
    None when it did not commit."""
    env = ctx.envelope
    raw = await conn.fetchval(
        "SELECT yk_tx_json($1, $2)", env.fixmedins_code, env.msgid, timeout=timeout_s
    )
    if raw is None:
        return None
    tx = msgspec.json.decode(raw, type=TxRecord)
    outcome = _idempotent(ctx, tx)
    return outcome.answer


def wire_time(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}"
