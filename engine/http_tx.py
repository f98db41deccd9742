"""POST /api/v1/tx: the settlement protocol endpoint.

Order at the edge (DESIGN.md §2-3): read the body (bounded), check the signature
headers — terminal known, timestamp within the window, signature valid, nonce unused
— before decoding anything else (401 otherwise); decode the envelope once (400 if the
body is not JSON, 200 with a field error if a field is wrong); the envelope's
institution must be the terminal's; route `infno` through the registry; run its flow
(engine.txn.flow: load → decide → write, state-changing ones in one database
transaction whose write also stores the answer for idempotency). A refusal changes
nothing but the claimed nonce. Database trouble is 503 with Retry-After, never 500. Each
request is counted once by infno and result (a business refusal also by itself), with
its latency, its wait for a pool connection and its database round trips
(engine.db.round_trips); an answered one also by what it did (`_count_outcome`: a
replay, the money moved, a reversal's result).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from engine import constants, edge
from engine.cache import TtlCache
from engine.clock import SYSTEM_CLOCK, Clock
from engine.db.pool import PoolExhausted, acquire
from engine.hsm_runtime import answer_for, timed
from engine.invariant import InvariantViolation
from engine.metrics import EngineMetrics
from engine.txn import flow as txflow
from engine.txn.context import Services, Terminal, TxContext
from engine.txn.db import TxDb
from engine.txn.flow import ClaimedConcurrently
from engine.txn.spec import TxSpec
from engine.txn.wire import InputDecoder
from hsm.errors import HsmError
from hsm.protocol import Hsm, KeyRef
from terminals import signing
from terminals.envelope import Envelope, answer
from terminals.messages import reversal as reversal_msg
from terminals.results import ResultCode

log = logging.getLogger("engine.tx")

PLATFORM_TZ = dt.timezone(dt.timedelta(hours=constants.PLATFORM_UTC_OFFSET_H))
_encoder = msgspec.json.Encoder(decimal_format="number")
_serials = itertools.count(random.randrange(10**9))

# Unique constraints that concurrent requests can hit after their checks passed.
_UNIQUE_REFUSALS = {
    "visits_open_outpatient_number": (
        ResultCode.visit_outpatient_number_duplicate,
        "input.data.ipt_otp_no: already has an open visit",
    ),
    "fee_details_pkey": (
        ResultCode.fee_detail_duplicate,
        "input.feedetail.feedetl_sn: uploaded before",
    ),
    "settlements_one_live_per_visit": (
        ResultCode.visit_already_settled,
        "input.data.mdtrt_id: already settled",
    ),
}


# (HTTP status, answer bytes, result code, infno label for the metrics)
_Answered = tuple[int, bytes, ResultCode]


@dataclass
class TxEndpoint:
    registry: Mapping[str, TxSpec]
    services: Services
    metrics: EngineMetrics
    get_pool: Any  # () -> asyncpg.Pool | None
    hsm: Hsm
    terminal_mac_master: KeyRef
    hsm_deadline_s: float
    request_budget_s: float  # server.request_timeout_s: every DB call gets what is left
    acquire_timeout_s: float  # database.acquire_timeout_s
    clock: Clock = SYSTEM_CLOCK
    terminals: TtlCache[str, asyncpg.Record] = field(
        default_factory=lambda: TtlCache(
            constants.REFERENCE_CACHE_CAPACITY, constants.REFERENCE_CACHE_TTL_S
        )
    )

    def __post_init__(self) -> None:
        self.metrics.start_tx_series(self.registry)


def _reply(
    code: ResultCode,
    *,
    status: int = 200,
    env_region: str = "000000",
    received: dt.datetime,
    err_msg: str | None = None,
    output: Any = None,
) -> tuple[int, bytes]:
    now = dt.datetime.now(PLATFORM_TZ)
    refmsgid = f"{env_region}{now:%Y%m%d%H%M%S}{next(_serials) % 10**10:010d}"
    body = _encoder.encode(
        answer(
            code,
            inf_refmsgid=refmsgid,
            received=received,
            responded=now,
            output=output,
            err_msg=err_msg,
        )
    )
    return status, body


def _response(status: int, body: bytes, retry_after: bool = False) -> web.Response:
    resp = web.Response(status=status, body=body, content_type="application/json")
    if retry_after:
        resp.headers["Retry-After"] = "1"
    return resp


def _ctx_terminal(row: asyncpg.Record) -> Terminal:
    return Terminal(
        row["terminal_id"], row["fixmedins_code"], row["level"], row["inst_type"], row["admdvs"]
    )


def _not_this_institution(env: Envelope, terminal: asyncpg.Record) -> str | None:
    """Why the envelope does not speak for the terminal's institution, or None. The
    treating region decides the catalog and where a cross-region settlement clears: it
    is the institution's own region, never what a client claims."""
    if env.fixmedins_code != terminal["fixmedins_code"]:
        return f"fixmedins_code: {env.fixmedins_code} is not this terminal's institution"
    if env.mdtrtarea_admvs != terminal["admdvs"]:
        return (
            f"mdtrtarea_admvs: {env.mdtrtarea_admvs} is not the region of institution"
            f" {env.fixmedins_code} ({terminal['admdvs']})"
        )
    return None


async def _terminal(
    endpoint: TxEndpoint, conn: asyncpg.Connection, terminal_id: str, now_s: float
) -> asyncpg.Record | None:
    row = endpoint.terminals.get(terminal_id, now_s)
    if row is None:
        row = await conn.fetchrow(
            "SELECT t.terminal_id, t.fixmedins_code, t.active, i.level, i.inst_type, i.admdvs"
            " FROM terminals t JOIN institutions i USING (fixmedins_code) WHERE t.terminal_id = $1",
            terminal_id,
            timeout=endpoint.services.command_timeout_s,
        )
        if row is not None:
            endpoint.terminals.put(terminal_id, row, now_s)
    return row


async def _signature_valid(
    endpoint: TxEndpoint, terminal_id: str, request: web.Request, body: bytes
) -> bool:
    """X-Yk-Signature checked inside the HSM under the terminal's derived key."""
    h = request.headers
    message = signing.canonical(
        request.method, request.path, h[signing.HEADER_TIMESTAMP], h[signing.HEADER_NONCE], body
    )
    backend = endpoint.hsm.backend
    return await timed(
        endpoint.metrics,
        backend,
        "verify_terminal_mac",
        endpoint.hsm.verify_terminal_mac(
            endpoint.terminal_mac_master,
            terminal_id,
            message,
            bytes.fromhex(h[signing.HEADER_SIGNATURE]),
            deadline_s=endpoint.hsm_deadline_s,
        ),
    )


def _check_headers(request: web.Request, now_s: float) -> tuple[ResultCode, str] | None:
    h = request.headers
    values = {
        name: h.get(name, "")
        for name in (
            signing.HEADER_TERMINAL,
            signing.HEADER_TIMESTAMP,
            signing.HEADER_NONCE,
            signing.HEADER_SIGNATURE,
        )
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        return ResultCode.signature_missing, f"{missing[0]}: header required"
    checks = (
        (signing.HEADER_TERMINAL, signing.TERMINAL_RE),
        (signing.HEADER_TIMESTAMP, signing.TIMESTAMP_RE),
        (signing.HEADER_NONCE, signing.NONCE_RE),
        (signing.HEADER_SIGNATURE, signing.SIGNATURE_RE),
    )
    for name, pattern in checks:
        if not pattern.match(values[name]):
            return ResultCode.signature_invalid, f"{name}: malformed"
    if abs(int(values[signing.HEADER_TIMESTAMP]) - now_s) > constants.SIGNATURE_SKEW_S_MAX:
        return (
            ResultCode.timestamp_outside_window,
            f"{signing.HEADER_TIMESTAMP}: more than {constants.SIGNATURE_SKEW_S_MAX}s"
            " from the engine's clock",
        )
    return None


def _too_large(endpoint: TxEndpoint, received: dt.datetime) -> web.Response:
    """413 as the protocol's JSON answer (not aiohttp's text/plain), counted."""
    refused = edge.too_large()
    endpoint.metrics.count_answer("unknown", refused.code)
    status, body = _reply(
        refused.code, status=refused.status, received=received, err_msg=refused.err_msg
    )
    return _response(status, body)


async def handle_tx(request: web.Request, endpoint: TxEndpoint) -> web.Response:
    received = dt.datetime.now(PLATFORM_TZ)
    started = time.perf_counter()
    body = await edge.read_body(request)
    if body is None:
        return _too_large(endpoint, received)
    pool = endpoint.get_pool()
    if pool is None:
        return _response(
            *_reply(ResultCode.database_unavailable, status=503, received=received), True
        )
    timeout_s = endpoint.services.command_timeout_s
    # The code the answer is counted under: None until one is decided (an unexpected
    # failure propagates and is counted internal_error); the infno label once routed.
    code: ResultCode | None = None
    label = _Label()
    # The request's every database call goes through this one connection, so its round
    # trips are the difference of two readings of its counter — both taken while the
    # request holds it: the pool hands a released connection to the next request in
    # another task, whose BEGIN would otherwise be counted here (the transaction core
    # never leaves a transaction open for the pool's reset to roll back).
    used = 0
    try:
        wait_s = min(endpoint.acquire_timeout_s, timeout_s)
        async with acquire(pool, timeout_s=wait_s, waits=endpoint.metrics) as conn:
            round_trips: Callable[[], int] = conn.round_trips  # the connection's, not the proxy's
            before = round_trips()
            try:
                status, out, code = await _authenticated(
                    request, endpoint, conn, body, received, label
                )
            finally:
                used = round_trips() - before
    except (
        HsmError,
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
    ) as exc:
        code, status, out, retry_after = _operating_answer(exc, received)
        if not retry_after:
            return _response(status, out)  # still counted: the finally below runs first
    finally:
        elapsed_s = time.perf_counter() - started
        endpoint.metrics.count_answer(label.infno, code)
        endpoint.metrics.tx_latency.labels(label.infno).observe(elapsed_s)
        endpoint.metrics.tx_db_round_trips.labels(label.infno).observe(used)
    return _response(status, out, status == 503)


@dataclass
class _Label:
    """The `infno` label of a request: `unknown` until the envelope names a routed code
    (so that a database or HSM failure after that is counted under its code)."""

    infno: str = "unknown"


_OperatingAnswer = tuple[ResultCode, int, bytes, bool]


def _operating_answer(exc: BaseException, received: dt.datetime) -> _OperatingAnswer:
    """The 503 for an operating condition: (code, status, body, with Retry-After)."""
    if isinstance(exc, HsmError):
        # Never a 500 nor a signature refusal: an outage is "try again" (503 +
        # Retry-After), a misconfiguration 503 hsm_misconfigured without Retry-After
        # (engine.hsm_runtime says which is which, and logs it bounded).
        hsm_answer = answer_for(exc)
        hsm_answer.log(log)
        status, out = _reply(
            hsm_answer.code,
            status=hsm_answer.status,
            received=received,
            err_msg=hsm_answer.client_message,
        )
        return hsm_answer.code, status, out, hsm_answer.retry_after
    if isinstance(exc, PoolExhausted):
        # The database answers but every connection is busy: "try again" as for an
        # outage, told apart so that operators see the pool, not the database.
        code, msg = ResultCode.overloaded, "engine busy; try again"
    else:
        log.warning(
            "database unavailable during transaction", extra={"fields": {"error": repr(exc)}}
        )
        code, msg = ResultCode.database_unavailable, "database unavailable; try again"
    status, out = _reply(code, status=503, received=received, err_msg=msg)
    return code, status, out, True


async def _authenticated(
    request: web.Request,
    endpoint: TxEndpoint,
    conn: asyncpg.Connection,
    body: bytes,
    received: dt.datetime,
    label: _Label,
) -> tuple[int, bytes, ResultCode]:
    now_s = time.time()
    bad = _check_headers(request, now_s)
    terminal = None
    if bad is None:
        terminal = await _terminal(endpoint, conn, request.headers[signing.HEADER_TERMINAL], now_s)
        if terminal is None or not terminal["active"]:
            bad = (
                ResultCode.terminal_unknown,
                f"{signing.HEADER_TERMINAL}: unknown or inactive terminal",
            )
        elif not await _signature_valid(endpoint, terminal["terminal_id"], request, body):
            bad = (ResultCode.signature_invalid, f"{signing.HEADER_SIGNATURE}: does not match")
    if bad is not None:
        return (*_reply(bad[0], status=401, received=received, err_msg=bad[1]), bad[0])
    if terminal is None:  # _check_headers and the lookup above refuse that
        raise InvariantViolation("no terminal after the signature check")
    deadline = endpoint.clock.monotonic() + endpoint.request_budget_s
    db = TxDb(conn, endpoint.clock, deadline, endpoint.services.command_timeout_s)
    nonce = request.headers[signing.HEADER_NONCE]
    nonce_expires = dt.datetime.fromtimestamp(
        int(request.headers[signing.HEADER_TIMESTAMP]) + constants.SIGNATURE_SKEW_S_MAX,
        dt.UTC,
    )

    async def early(code: ResultCode, status: int, msg: str) -> _Answered:
        """An answer before any transaction ran: the nonce is claimed all the same."""
        if not await txflow.claim_nonce_alone(db, terminal["terminal_id"], nonce, nonce_expires):
            code, status, msg = ResultCode.nonce_replayed, 401, "X-Yk-Nonce: already used"
        region = env.mdtrtarea_admvs if env is not None else "000000"
        return (
            *_reply(code, status=status, env_region=region, received=received, err_msg=msg),
            code,
        )

    env: Envelope | None = None
    # engine.edge refuses what no decoder may see (invalid UTF-8, deep nesting, duplicate
    # keys, NUL, lone surrogates), then decodes the envelope once.
    decoded = edge.decode_envelope(body)
    if isinstance(decoded, edge.BodyRefusal):
        return await early(decoded.code, decoded.status, decoded.err_msg)
    env = decoded
    spec = endpoint.registry.get(env.infno)
    if spec is not None:  # else "unknown": a client must not be able to mint label values
        label.infno = spec.infno
    mismatch = _not_this_institution(env, terminal)
    if mismatch is not None:
        return await early(ResultCode.institution_mismatch, 200, mismatch)
    if spec is None:
        msg = f"infno: {env.infno} is not a known transaction"
        return await early(ResultCode.infno_unknown, 200, msg)
    # Idempotency compares what the request asks: its transaction and its input bytes.
    request_sha256 = hashlib.sha256(env.infno.encode() + b"\n" + bytes(env.input)).digest()
    status, out, code = await _execute(
        spec,
        env,
        request_sha256,
        _ctx_terminal(terminal),
        conn,
        endpoint,
        received,
        deadline,
        nonce,
        nonce_expires,
    )
    return status, out, code


async def _execute(
    spec: TxSpec,
    env: Envelope,
    request_sha256: bytes,
    terminal: Terminal,
    conn: asyncpg.Connection,
    endpoint: TxEndpoint,
    received: dt.datetime,
    deadline: float,
    nonce: str,
    nonce_expires: dt.datetime,
) -> tuple[int, bytes, ResultCode]:
    """Run the routed transaction, again on a serialization failure, a deadlock or a
    msgid claimed concurrently (each attempt with a fresh context: nothing of a failed
    attempt survives its rollback)."""
    for attempt in range(1, constants.TX_DB_RETRIES_MAX + 1):
        ctx = TxContext(
            envelope=env,
            request_sha256=request_sha256,
            terminal=terminal,
            services=endpoint.services,
            now=received,
            db=TxDb(conn, endpoint.clock, deadline, endpoint.services.command_timeout_s),
            nonce=nonce,
            nonce_expires=nonce_expires,
        )
        try:
            return await _run_flow(spec, ctx, endpoint, received)
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, ClaimedConcurrently):
            await ctx.db.rollback()
            if attempt == constants.TX_DB_RETRIES_MAX:
                raise
            await asyncio.sleep(0.005 * attempt)
    raise InvariantViolation("the retry loop ends by returning or raising")


_input_decoders: dict[type[Any], InputDecoder] = {}


def _input_decoder(input_type: type[Any]) -> InputDecoder:
    """One decoder per transaction input type, built on first use, not per request."""
    found = _input_decoders.get(input_type)
    if found is None:
        found = _input_decoders[input_type] = InputDecoder(input_type)
    return found


async def _refuse_input(
    spec: TxSpec, ctx: TxContext, received: dt.datetime
) -> tuple[int, bytes, ResultCode] | None:
    """Decode `input` into the transaction's Struct; a bad field (or a missing insured
    region where the input names a person) is answered before any load — with the
    nonce claimed all the same, so that the refusal cannot be replayed either."""
    env = ctx.envelope
    code = _input_decoder(spec.input_type).decode(ctx)
    if code is None and spec.names_person and not env.insuplc_admdvs:
        code = ctx.refuse(
            ResultCode.field_invalid, "insuplc_admdvs: required when the input names a person"
        )
    if code is None:
        return None
    status = 200
    if not await txflow.claim_nonce(ctx):
        code, status, ctx.err_msg = ResultCode.nonce_replayed, 401, "X-Yk-Nonce: already used"
    _log(ctx, spec, code)
    region = env.mdtrtarea_admvs
    return (
        *_reply(code, status=status, env_region=region, received=received, err_msg=ctx.err_msg),
        code,
    )


async def _run_flow(
    spec: TxSpec, ctx: TxContext, endpoint: TxEndpoint, received: dt.datetime
) -> tuple[int, bytes, ResultCode]:
    """A transaction on the core's shape (engine.txn.flow): load → decide → write."""
    env = ctx.envelope
    region = env.mdtrtarea_admvs
    flow = spec.flow
    bad_input = await _refuse_input(spec, ctx, received)
    if bad_input is not None:
        return bad_input

    def answer(output: Any) -> bytes:
        return _reply(ResultCode.ok, env_region=region, received=received, output=output)[1]

    try:
        outcome = await txflow.run(flow, ctx, ctx.input, answer)
    except txflow.CommitOutcomeUnknown as lost:
        found = await _after_lost_commit(ctx, endpoint)
        if found is None:
            raise  # did not commit: 503, and a retry is safe
        _log(ctx, spec, ResultCode.ok, replay=True)
        if lost.outcome is not None:  # it committed: count what it did
            _count_outcome(spec, lost.outcome, endpoint.metrics)
        return 200, found, ResultCode.ok
    except asyncpg.UniqueViolationError as exc:
        refusal = _UNIQUE_REFUSALS.get(exc.constraint_name or "")
        if refusal is None:
            raise
        await ctx.db.rollback()
        ctx.refuse(*refusal)
        _log(ctx, spec, ctx.code)
        return (
            *_reply(ctx.code, env_region=region, received=received, err_msg=ctx.err_msg),
            ctx.code,
        )
    ctx.code, ctx.err_msg = outcome.code, outcome.err_msg
    _log(ctx, spec, outcome.code, replay=outcome.replay)
    _count_outcome(spec, outcome, endpoint.metrics)
    if outcome.answer is not None:
        return outcome.status, outcome.answer, outcome.code
    if outcome.code is not ResultCode.ok:
        return (
            *_reply(
                outcome.code,
                status=outcome.status,
                env_region=region,
                received=received,
                err_msg=outcome.err_msg,
            ),
            outcome.code,
        )
    return (
        *_reply(ResultCode.ok, env_region=region, received=received, output=outcome.output),
        outcome.code,
    )


async def _after_lost_commit(ctx: TxContext, endpoint: TxEndpoint) -> bytes | None:
    """The line died after write + COMMIT went out: ask on another connection whether
    it committed, so a committed settlement is never reported as "nothing happened".
    None when it did not (or the database cannot say)."""
    pool = endpoint.get_pool()
    if pool is None:
        return None
    timeout_s = endpoint.services.command_timeout_s
    lost_pid = ctx.db.server_pid
    try:
        wait_s = min(endpoint.acquire_timeout_s, timeout_s)
        async with acquire(pool, timeout_s=wait_s, waits=endpoint.metrics) as conn:
            # The server may still be committing what it received: wait (within the
            # request's budget) until the backend that had our line is done with it.
            while await conn.fetchval(  # noqa: ASYNC110 -- the event is in another process
                "SELECT state = 'active' FROM pg_stat_activity WHERE pid = $1",
                lost_pid,
                timeout=ctx.db.timeout(),
            ):
                await asyncio.sleep(constants.LOST_COMMIT_POLL_S)
            return await txflow.stored_answer(conn, ctx, timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("outcome of a lost commit unknown", extra={"fields": {"error": repr(exc)}})
        return None


def _count_outcome(spec: TxSpec, outcome: txflow.Outcome, metrics: EngineMetrics) -> None:
    """What an answered transaction did, beyond its count by result: a replay of a
    msgid seen before, the money a success moved, a reversal's result."""
    if outcome.replay:
        metrics.idempotent_replays.labels(spec.infno).inc()
        return
    moved = outcome.moved
    if moved is not None:
        metrics.count_money(
            spec.infno,
            moved.kind,
            moved.pharmacy,
            moved.fund_fen,
            moved.account_fen,
            moved.cash_fen,
        )
    if isinstance(outcome.output, reversal_msg.Output):
        metrics.count_reversal(outcome.output.data.oinfno, outcome.output.data.rslt)


def _log(ctx: TxContext, spec: TxSpec, code: ResultCode, *, replay: bool = False) -> None:
    log.info(
        "transaction",
        extra={
            "fields": {
                "infno": spec.infno,
                "msgid": ctx.envelope.msgid,
                "fixmedins_code": ctx.envelope.fixmedins_code,
                "result": code.name,
                "err_msg": ctx.err_msg,
                "replay": replay,
            }
        },
    )
