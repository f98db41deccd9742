"""POST /api/v1/tx: the settlement protocol endpoint.

Order at the edge (DESIGN.md §2-3): read the body (bounded), check the signature
headers — terminal known, timestamp within the window, signature valid, nonce unused
— before decoding anything else (401 otherwise); decode the envelope once (400 if the
body is not JSON, 200 with a field error if a field is wrong); the envelope's
institution must be the terminal's; route `infno` through the registry; run the
pipeline, state-changing ones inside one database transaction that also stores the
answer for idempotency. A refusal rolls the transaction back: bad input changes
nothing. Database trouble is 503 with Retry-After, never 500. Each request is counted
once by infno and result, with its latency and its database round trips
(engine.db.round_trips).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from engine import constants
from engine.cache import TtlCache
from engine.hsm_runtime import timed
from engine.txn import pipeline
from engine.txn.common import field_message
from engine.txn.context import Services, Terminal, TxContext
from engine.txn.registry import TxSpec
from hsm.errors import HsmError
from hsm.protocol import Hsm, KeyRef
from terminals import signing
from terminals.envelope import Envelope, answer
from terminals.results import ResultCode

log = logging.getLogger("engine.tx")

PLATFORM_TZ = dt.timezone(dt.timedelta(hours=constants.PLATFORM_UTC_OFFSET_H))
_encoder = msgspec.json.Encoder(decimal_format="number")
_envelope_decoder = msgspec.json.Decoder(Envelope)
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


@dataclass
class TxEndpoint:
    registry: dict[str, TxSpec]
    services: Services
    metrics: Any  # engine.metrics.EngineMetrics (tx counters)
    nonces: Any  # engine.nonces.NonceStore
    get_pool: Any  # () -> asyncpg.Pool | None
    hsm: Hsm
    terminal_mac_master: KeyRef
    hsm_deadline_s: float
    terminals: TtlCache[str, asyncpg.Record] = field(
        default_factory=lambda: TtlCache(
            constants.REFERENCE_CACHE_CAPACITY, constants.REFERENCE_CACHE_TTL_S
        )
    )


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


async def _terminal(
    endpoint: TxEndpoint, conn: asyncpg.Connection, terminal_id: str, now_s: float
) -> asyncpg.Record | None:
    row = endpoint.terminals.get(terminal_id, now_s)
    if row is None:
        row = await conn.fetchrow(
            "SELECT t.terminal_id, t.fixmedins_code, t.active, i.level, i.inst_type"
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


async def handle_tx(request: web.Request, endpoint: TxEndpoint) -> web.Response:
    received = dt.datetime.now(PLATFORM_TZ)
    started = time.perf_counter()
    body = await request.read()
    pool = endpoint.get_pool()
    if pool is None:
        return _response(
            *_reply(ResultCode.database_unavailable, status=503, received=received), True
        )
    timeout_s = endpoint.services.command_timeout_s
    infno, code = "unknown", ResultCode.ok
    # The request's every database call goes through this one connection (nonces are in
    # memory), so its round trips are the difference of two readings of its counter.
    # The reading after release also sees a ROLLBACK the pool's reset may send.
    round_trips: Callable[[], int] | None = None
    round_trips_before = 0
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            round_trips = conn.round_trips  # bound to the connection, not to the pool proxy
            round_trips_before = round_trips()
            status, out, code, infno = await _authenticated(request, endpoint, conn, body, received)
    except HsmError as exc:
        # The HSM is an operating dependency: its failure is "try again", not a 500 and
        # not a signature refusal.
        log.error("HSM failed while checking a signature", extra={"fields": {"error": repr(exc)}})
        code = ResultCode.hsm_unavailable
        status, out = _reply(
            code, status=503, received=received, err_msg="HSM unavailable; try again"
        )
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        log.warning(
            "database unavailable during transaction", extra={"fields": {"error": repr(exc)}}
        )
        code = ResultCode.database_unavailable
        status, out = _reply(
            code, status=503, received=received, err_msg="database unavailable; try again"
        )
    finally:
        elapsed_s = time.perf_counter() - started
        endpoint.metrics.tx_total.labels(infno, code.name).inc()
        endpoint.metrics.tx_latency.labels(infno).observe(elapsed_s)
        used = 0 if round_trips is None else round_trips() - round_trips_before
        endpoint.metrics.tx_db_round_trips.labels(infno).observe(used)
    return _response(status, out, status == 503)


async def _authenticated(
    request: web.Request,
    endpoint: TxEndpoint,
    conn: asyncpg.Connection,
    body: bytes,
    received: dt.datetime,
) -> tuple[int, bytes, ResultCode, str]:
    now_s = time.time()
    bad = _check_headers(request, now_s)
    terminal = None
    if bad is None:
        terminal = await _terminal(endpoint, conn, request.headers[signing.HEADER_TERMINAL], now_s)
        h = request.headers
        if terminal is None or not terminal["active"]:
            bad = (
                ResultCode.terminal_unknown,
                f"{signing.HEADER_TERMINAL}: unknown or inactive terminal",
            )
        elif not await _signature_valid(endpoint, terminal["terminal_id"], request, body):
            bad = (ResultCode.signature_invalid, f"{signing.HEADER_SIGNATURE}: does not match")
        else:
            fresh = endpoint.nonces.check_and_remember(
                terminal["terminal_id"], h[signing.HEADER_NONCE], now_s
            )
            if fresh is None:
                code = ResultCode.overloaded
                return (
                    *_reply(code, status=503, received=received, err_msg="too many requests"),
                    code,
                    "unknown",
                )
            if not fresh:
                bad = (ResultCode.nonce_replayed, f"{signing.HEADER_NONCE}: already used")
    if bad is not None:
        return (*_reply(bad[0], status=401, received=received, err_msg=bad[1]), bad[0], "unknown")
    assert terminal is not None
    try:
        env = _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        code = ResultCode.field_invalid
        return (*_reply(code, received=received, err_msg=field_message(exc, "")), code, "unknown")
    except msgspec.DecodeError as exc:
        code = ResultCode.request_body_malformed
        return (
            *_reply(code, status=400, received=received, err_msg=f"body: {exc}"),
            code,
            "unknown",
        )
    region = env.mdtrtarea_admvs
    if env.fixmedins_code != terminal["fixmedins_code"]:
        code = ResultCode.institution_mismatch
        msg = f"fixmedins_code: {env.fixmedins_code} is not this terminal's institution"
        label = env.infno if env.infno in endpoint.registry else "unknown"
        return (*_reply(code, env_region=region, received=received, err_msg=msg), code, label)
    spec = endpoint.registry.get(env.infno)
    if spec is None:
        code = ResultCode.infno_unknown
        msg = f"infno: {env.infno} is not a known transaction"
        # "unknown" as the metric label: a client must not be able to mint label values.
        return (*_reply(code, env_region=region, received=received, err_msg=msg), code, "unknown")
    ctx_terminal = Terminal(
        terminal["terminal_id"],
        terminal["fixmedins_code"],
        terminal["level"],
        terminal["inst_type"],
    )
    digest = hashlib.sha256(body).digest()
    for attempt in range(1, constants.TX_DB_RETRIES_MAX + 1):
        try:
            status, out, code = await _run(
                spec, env, digest, ctx_terminal, conn, endpoint, received
            )
            return status, out, code, env.infno
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
            if attempt == constants.TX_DB_RETRIES_MAX:
                raise
            await asyncio.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


async def _run(
    spec: TxSpec,
    env: Envelope,
    digest: bytes,
    terminal: Terminal,
    conn: asyncpg.Connection,
    endpoint: TxEndpoint,
    received: dt.datetime,
) -> tuple[int, bytes, ResultCode]:
    ctx = TxContext(
        envelope=env,
        body_sha256=digest,
        terminal=terminal,
        conn=conn,
        services=endpoint.services,
        now=received,
    )
    region = env.mdtrtarea_admvs
    tx = conn.transaction() if spec.mutating else None
    if tx is not None:
        await tx.start()
    try:
        try:
            code = await pipeline.run(spec.participants, ctx)
        except asyncpg.UniqueViolationError as exc:
            refusal = _UNIQUE_REFUSALS.get(exc.constraint_name or "")
            if refusal is None:
                raise
            code = ctx.refuse(*refusal)
        if ctx.replayed_answer is not None:
            if tx is not None:
                await tx.rollback()
                tx = None
            _log(ctx, spec, ResultCode.ok, replay=True)
            return 200, ctx.replayed_answer, ResultCode.ok
        if code is not ResultCode.ok:
            if tx is not None:
                await tx.rollback()
                tx = None
            _log(ctx, spec, code)
            return (*_reply(code, env_region=region, received=received, err_msg=ctx.err_msg), code)
        status, out = _reply(code, env_region=region, received=received, output=ctx.output)
        if tx is not None:
            await conn.execute(
                "UPDATE tx_log SET answer = $3 WHERE fixmedins_code = $1 AND msgid = $2",
                env.fixmedins_code,
                env.msgid,
                out,
                timeout=endpoint.services.command_timeout_s,
            )
            await tx.commit()
            tx = None
        if ctx.money_moved is not None:
            kind, fund_fen, acct_fen, cash_fen = ctx.money_moved
            for payer, fen in (("fund", fund_fen), ("account", acct_fen), ("cash", cash_fen)):
                endpoint.metrics.settled_fen.labels(kind, payer).inc(fen)
        _log(ctx, spec, code)
        return status, out, code
    finally:
        if tx is not None:
            with contextlib.suppress(asyncpg.InterfaceError, OSError, asyncpg.PostgresError):
                await tx.rollback()


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
                "trace": ctx.trace,
            }
        },
    )
