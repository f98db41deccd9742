"""A signed request replayed after the engine restarted is refused (DESIGN.md §3:
"Nonces live in PostgreSQL for the skew window, so a replay is refused after a restart
and by every engine process alike").

Each test captures one request exactly as it went on the wire (body and signed
headers), checks that the engine refuses a replay while it runs, restarts the engine
on the same database (a new process, a new port, the same HSM key file and
environment), and replays the same bytes and headers within the clock-skew window:
HTTP 401 with `nonce_replayed`, and nothing changed. A nonce held only in process
memory is forgotten by the restart, and then the replay is answered 200: a 1101 hands
person data to whoever replayed it, a 9001 hands out its sign_no again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from engine import constants
from engine.db.embedded import EmbeddedPostgres
from terminals import signing
from terminals.client import PATH, MsgIdFactory
from terminals.envelope import Answer
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment, deployed
from tests.support import EngineProcess

pytestmark = pytest.mark.slow

PLATFORM_TZ = dt.timezone(dt.timedelta(hours=constants.PLATFORM_UTC_OFFSET_H))
_encoder = msgspec.json.Encoder(decimal_format="number")


class Captured(msgspec.Struct, frozen=True):
    """One request as the wire carried it, to be sent again unchanged."""

    body: bytes
    headers: dict[str, str]
    signed_at_s: int


class Answered(msgspec.Struct, frozen=True):
    status: int
    answer: Answer


@pytest.fixture
def deployment(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A deployment of its own per test: the test restarts its engine."""
    with deployed(pg_server, tmp_path_factory) as d:
        yield d


@contextlib.contextmanager
def restarted(d: Deployment) -> Iterator[EngineProcess]:
    """Stop the deployment's engine and start a new one on the same database, with the
    same environment and working directory (so the same HSM key file)."""
    assert d.engine.stop() == 0, d.engine.log_text()
    work_dir: Path = d.engine.log_path.parent
    env = {"YIKATONG_DATABASE_URL": d.dsn, "YIKATONG_DATABASE_POOL_MAX_SIZE": "20"}
    engine = EngineProcess(work_dir, env)
    try:
        engine.wait_ready()
        yield engine
    finally:
        assert engine.stop() == 0, engine.log_text()


def envelope(d: Deployment, infno: str, msgid: str, input_obj: object, sign_no: str) -> bytes:
    """The envelope of DESIGN.md §3 from the first hospital, built here so that the test
    holds its exact bytes."""
    creds = d.credentials(d.hospital())
    return _encoder.encode(
        {
            "infno": infno,
            "msgid": msgid,
            "mdtrtarea_admvs": creds.mdtrtarea_admvs,
            "insuplc_admdvs": "",
            "recer_sys_code": "YKT",
            "infver": "V1.0",
            "opter_type": creds.opter_type,
            "opter": creds.opter,
            "opter_name": creds.opter_name,
            "inf_time": dt.datetime.now(PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            "fixmedins_code": creds.fixmedins_code,
            "fixmedins_name": creds.fixmedins_name,
            "sign_no": sign_no,
            "input": input_obj,
        }
    )


def capture(d: Deployment, body: bytes) -> Captured:
    creds = d.credentials(d.hospital())
    now_s = int(time.time())
    headers = signing.signed_headers(
        creds.terminal_id, creds.mac_key, "POST", PATH, body, now_s=now_s, nonce=signing.new_nonce()
    )
    headers["Content-Type"] = "application/json"
    return Captured(body, headers, now_s)


async def send(engine: EngineProcess, request: Captured) -> Answered:
    """POST the captured body with the captured headers, byte for byte."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(engine.url + PATH, data=request.body, headers=request.headers) as resp,
    ):
        return Answered(resp.status, msgspec.json.decode(await resp.read(), type=Answer))


def assert_replay_refused(answered: Answered) -> None:
    assert (answered.status, ResultCode(answered.answer.yk_code)) == (
        401,
        ResultCode.nonce_replayed,
    ), answered


def assert_within_window(request: Captured) -> None:
    """The replay must fail on its nonce, not on a stale timestamp."""
    assert time.time() - request.signed_at_s < constants.SIGNATURE_SKEW_S_MAX / 2


async def sign_ins(d: Deployment) -> object:
    return await d.fetchval(
        "SELECT count(*) FROM sign_ins WHERE terminal_id = $1", d.hospital().terminal_id
    )


async def test_a_replayed_request_is_refused_after_the_engine_restarts(
    deployment: Deployment,
) -> None:
    """A 1101 person lookup: what a replay after a restart would leak is person data."""
    d = deployment
    async with d.client() as client:
        signed_in = await client.sign_in()
    person = d.person()
    lookup = {
        "data": {
            "mdtrt_cert_type": "02",
            "mdtrt_cert_no": person.certno,
            "psn_cert_type": "01",
            "certno": person.certno,
        }
    }
    msgid = await MsgIdFactory.for_institution(d.hospital().fixmedins_code).next()
    request = capture(d, envelope(d, "1101", msgid, lookup, signed_in.signinoutb.sign_no))
    first = await send(d.engine, request)
    assert (first.status, first.answer.infcode) == (200, 0), first
    assert_replay_refused(await send(d.engine, request))  # the engine that saw it

    with restarted(d) as engine:
        assert_within_window(request)
        assert_replay_refused(await send(engine, request))


async def test_a_replayed_sign_in_is_refused_after_the_engine_restarts_and_signs_in_nobody(
    deployment: Deployment,
) -> None:
    d = deployment
    creds = d.credentials(d.hospital())
    msgid = await MsgIdFactory.for_institution(d.hospital().fixmedins_code).next()
    sign_in = {"signIn": {"opter_no": creds.opter, "mac": "", "ip": ""}}
    request = capture(d, envelope(d, "9001", msgid, sign_in, ""))
    first = await send(d.engine, request)
    assert (first.status, first.answer.infcode) == (200, 0), first
    rows = await sign_ins(d)
    assert_replay_refused(await send(d.engine, request))

    with restarted(d) as engine:
        assert_within_window(request)
        assert_replay_refused(await send(engine, request))
        assert await sign_ins(d) == rows, "the replayed 9001 signed in again"
