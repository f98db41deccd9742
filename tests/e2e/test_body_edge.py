"""The body check of POST /api/v1/tx through a real engine: a signed body with invalid
UTF-8, nesting past the limit, a duplicate key, a NUL or a lone surrogate gets its
documented status and an `err_msg` naming the byte or the path, in the JSON answer,
and changes nothing; a body over the size limit gets a JSON 413; signature hex is
accepted in upper case. (The pure check: tests/unit/test_edge.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import msgspec
import pytest

from engine import constants
from terminals.client import PATH
from tests.e2e.conftest import Deployment
from tests.e2e.signed_bytes import (
    HOLE,
    Reply,
    Rows,
    envelope,
    person_info,
    post,
    sign_in,
    with_bytes,
)

pytestmark = pytest.mark.slow
DEPTH = constants.HTTP_BODY_DEPTH_MAX


@pytest.fixture(scope="module")
def sign_no(deployment: Deployment) -> str:
    return sign_in(deployment)


@pytest.fixture(scope="module")
def rows(deployment: Deployment) -> Iterator[Rows]:
    counter = Rows(deployment.dsn)
    yield counter
    counter.close()


def refused(d: Deployment, rows: Rows, body: bytes) -> Reply:
    """Post `body`; check the answer is the JSON envelope of a refusal and that no row
    of tx_log, visits or journal_entries came or went."""
    before = rows.count()
    reply = post(d, body)
    assert reply.content_type.startswith("application/json"), reply
    assert reply.answer["infcode"] == -1, reply
    assert rows.count() == before
    return reply


def registration(d: Deployment, sign_no: str) -> dict[str, object]:
    """2201 for a person nobody registered: it would open a visit if it got through."""
    p = d.person()
    data = {
        "psn_no": p.psn_no,
        "insutype": p.insutype,
        "begntime": "2026-11-29 10:00:00",
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": p.certno,
        "ipt_otp_no": "EDGE0001",
    }
    doc = envelope(d, sign_no, "2201", {"data": data})
    doc["insuplc_admdvs"] = p.insuplc_admdvs
    return doc


def test_invalid_utf8_in_an_envelope_string_is_400_at_its_byte(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    doc = person_info(deployment, sign_no)
    doc["opter_name"] = HOLE
    body = with_bytes(doc, b'"\xe6\x94\xb6\xff"')
    at = body.index(b"\xff")
    reply = refused(deployment, rows, body)
    assert (reply.status, reply.answer["yk_result"]) == (400, "request_body_malformed")
    assert reply.answer["err_msg"] == f"body: not valid UTF-8 at byte {at}"


@pytest.mark.parametrize(
    "bad", [b"\xc3(", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe4\xb8"]
)
def test_invalid_utf8_in_input_is_400_at_its_byte(
    deployment: Deployment, sign_no: str, rows: Rows, bad: bytes
) -> None:
    body = with_bytes(person_info(deployment, sign_no, psn_name=HOLE), b'"' + bad + b'"')
    reply = refused(deployment, rows, body)
    assert (reply.status, reply.answer["yk_result"]) == (400, "request_body_malformed")
    assert reply.answer["err_msg"] == f"body: not valid UTF-8 at byte {body.index(bad)}"


def test_nesting_one_past_the_limit_is_400_naming_the_path(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    # The envelope, input and data are levels 1-3: 30 arrays in psn_name reach 33.
    levels = DEPTH - 2
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = refused(deployment, rows, with_bytes(doc, b"[" * levels + b"]" * levels))
    assert (reply.status, reply.answer["yk_result"]) == (400, "request_body_malformed")
    path = "input.data.psn_name" + "[0]" * (levels - 1)
    assert reply.answer["err_msg"] == f"body: nested deeper than {DEPTH} levels at {path}"


def test_nesting_at_the_limit_reaches_the_field_check(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    levels = DEPTH - 3
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = refused(deployment, rows, with_bytes(doc, b"[" * levels + b"]" * levels))
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    assert reply.answer["err_msg"].startswith("input.data.psn_name: expected `str`")


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_very_deep_nesting_is_400_not_500(
    deployment: Deployment, sign_no: str, rows: Rows, levels: int
) -> None:
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = refused(deployment, rows, with_bytes(doc, b"[" * levels + b"]" * levels))
    assert (reply.status, reply.answer["yk_result"]) == (400, "request_body_malformed")
    assert reply.answer["err_msg"].startswith(f"body: nested deeper than {DEPTH} levels")


def test_duplicate_key_in_input_is_a_field_error_and_opens_no_visit(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    doc = registration(deployment, sign_no)
    body = msgspec.json.encode(doc)
    body = body.replace(b'"psn_no":', b'"psn_no":"P0","psn_no":', 1)
    reply = refused(deployment, rows, body)
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    assert reply.answer["err_msg"] == "input.data.psn_no: duplicate key"


def test_duplicate_envelope_key_is_a_field_error(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    body = msgspec.json.encode(person_info(deployment, sign_no))
    body = body.replace(b'"msgid":', b'"msgid":"H1","m\\u0073gid":', 1)
    reply = refused(deployment, rows, body)
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    assert reply.answer["err_msg"] == "msgid: duplicate key"


@pytest.mark.parametrize("nul", [b"\\u0000", b"\x00"], ids=["escaped", "raw"])
def test_nul_in_input_is_a_field_error(
    deployment: Deployment, sign_no: str, rows: Rows, nul: bytes
) -> None:
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = refused(deployment, rows, with_bytes(doc, b'"\xe5\xbc\xa0' + nul + b'"'))
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    assert reply.answer["err_msg"] == "input.data.psn_name: NUL character not allowed"


def test_nul_in_an_envelope_key_is_a_field_error(
    deployment: Deployment, sign_no: str, rows: Rows
) -> None:
    body = msgspec.json.encode(person_info(deployment, sign_no))
    body = body.replace(b'"opter_name":', b'"opter\\u0000name":', 1)
    reply = refused(deployment, rows, body)
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    assert reply.answer["err_msg"] == "opter\\u0000name: NUL character not allowed in a key"


@pytest.mark.parametrize(
    ("escape", "unit"),
    [
        (b"\\ud800", "d800"),
        (b"\\udfff", "dfff"),
        (b"\\uD800A", "d800"),
        (b"\\ud800\\u0041", "d800"),
        (b"\\udbff\\udbff\\udc00", "dbff"),  # the second high one pairs; the first is lone
    ],
)
def test_lone_surrogate_in_input_is_a_field_error(
    deployment: Deployment, sign_no: str, rows: Rows, escape: bytes, unit: str
) -> None:
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = refused(deployment, rows, with_bytes(doc, b'"' + escape + b'"'))
    assert (reply.status, reply.answer["yk_result"]) == (200, "field_invalid")
    msg = f"input.data.psn_name: lone surrogate \\u{unit} not allowed"
    assert reply.answer["err_msg"] == msg


def test_a_surrogate_pair_is_a_character(deployment: Deployment, sign_no: str) -> None:
    doc = person_info(deployment, sign_no, psn_name=HOLE)
    reply = post(deployment, with_bytes(doc, b'"\\ud842\\udfb7"'))  # 𠮷, escaped
    assert reply.status == 200 and reply.answer["yk_result"] != "field_invalid", reply


async def post_unsigned(d: Deployment, data: object, headers: dict[str, str]) -> Reply:
    async with (
        aiohttp.ClientSession() as session,
        session.post(d.engine.url + PATH, data=data, headers=headers) as resp,
    ):
        return Reply(resp.status, resp.content_type, msgspec.json.decode(await resp.read()))


def test_a_body_over_the_limit_is_a_json_413(deployment: Deployment, rows: Rows) -> None:
    body = b" " * (constants.HTTP_BODY_BYTES_MAX + 1)
    before = rows.count()
    reply = asyncio.run(post_unsigned(deployment, body, {}))
    assert (reply.status, reply.content_type) == (413, "application/json")
    assert reply.answer["infcode"] == -1
    assert reply.answer["yk_result"] == "request_body_too_large"
    assert reply.answer["yk_code"] == 1005
    assert reply.answer["err_msg"] == f"body: larger than {constants.HTTP_BODY_BYTES_MAX} bytes"
    assert rows.count() == before


def test_a_chunked_body_over_the_limit_is_a_json_413(deployment: Deployment) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(constants.HTTP_BODY_BYTES_MAX // 4096 + 1):
            yield b" " * 4096

    reply = asyncio.run(post_unsigned(deployment, chunks(), {}))
    assert (reply.status, reply.content_type) == (413, "application/json")
    assert reply.answer["yk_result"] == "request_body_too_large"


def test_a_body_at_the_limit_is_read(deployment: Deployment, sign_no: str) -> None:
    body = msgspec.json.encode(person_info(deployment, sign_no))
    body += b" " * (constants.HTTP_BODY_BYTES_MAX - len(body))
    reply = post(deployment, body)
    assert (reply.status, reply.answer["infcode"]) == (200, 0), reply


@pytest.mark.parametrize(
    "hex_case", [str.upper, lambda h: h[:32].upper() + h[32:]], ids=["upper", "mixed"]
)
def test_signature_hex_in_upper_or_mixed_case_is_accepted(
    deployment: Deployment, sign_no: str, hex_case: Callable[[str], str]
) -> None:
    body = msgspec.json.encode(person_info(deployment, sign_no))
    reply = post(deployment, body, hex_case=hex_case)
    assert (reply.status, reply.answer["infcode"]) == (200, 0), reply


def test_a_wrong_signature_in_upper_case_is_still_401(deployment: Deployment) -> None:
    reply = post(deployment, b"{}", hex_case=lambda _: "0" * 63 + "A")
    assert (reply.status, reply.answer["yk_result"]) == (401, "signature_invalid")
