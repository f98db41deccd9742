"""Signed requests whose bodies are built byte by byte, for the tests of the edge's body
check (tests/e2e/test_body_edge.py, tests/fuzz/test_signed_envelope_bytes.py): a valid
envelope as a dict, encoded, then bytes put where a string was; signed over exactly
those bytes and sent with urllib, so that nothing on the way re-encodes them."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from terminals import signing
from terminals.client import PATH
from tests.e2e.conftest import Deployment

# Stands for a string whose bytes a test writes itself (see `with_bytes`).
HOLE = "@@hole@@"
_seq = itertools.count(10**17)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    answer: dict[str, Any]


def post(d: Deployment, body: bytes, *, hex_case: Callable[[str], str] = str.lower) -> Reply:
    """POST `body` signed by the first hospital's terminal (the signature's hex digits
    put through `hex_case`); the answer must be JSON."""
    creds = d.credentials(d.hospital())
    headers = signing.signed_headers(
        creds.terminal_id,
        creds.mac_key,
        "POST",
        PATH,
        body,
        now_s=int(time.time()),
        nonce=signing.new_nonce(),
    )
    headers[signing.HEADER_SIGNATURE] = hex_case(headers[signing.HEADER_SIGNATURE])
    headers["Content-Type"] = "application/json"
    request = urllib.request.Request(d.engine.url + PATH, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, ctype, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers.get("Content-Type", ""), exc.read()
    return Reply(status, ctype, json.loads(raw))


def msgid(d: Deployment) -> str:
    return f"{d.credentials(d.hospital()).fixmedins_code}{next(_seq):018d}"


def envelope(d: Deployment, sign_no: str, infno: str, input_obj: Any) -> dict[str, Any]:
    creds = d.credentials(d.hospital())
    return {
        "infno": infno,
        "msgid": msgid(d),
        "mdtrtarea_admvs": creds.mdtrtarea_admvs,
        "insuplc_admdvs": d.pop.persons[-1].insuplc_admdvs,
        "opter_type": "1",
        "opter": creds.opter,
        "opter_name": "收费员",
        "inf_time": "2026-11-29 10:00:00",
        "fixmedins_code": creds.fixmedins_code,
        "sign_no": sign_no,
        "input": input_obj,
    }


def person_info(d: Deployment, sign_no: str, **data: Any) -> dict[str, Any]:
    """A 1101 by ID number (it reads, it changes nothing)."""
    person = d.pop.persons[-1]
    fields = {"mdtrt_cert_type": "02", "mdtrt_cert_no": person.certno, **data}
    return envelope(d, sign_no, "1101", {"data": fields})


def with_bytes(doc: dict[str, Any], raw: bytes) -> bytes:
    """`doc` encoded, with the string HOLE (quotes included) replaced by `raw`."""
    body = msgspec.json.encode(doc)
    hole = msgspec.json.encode(HOLE)
    if body.count(hole) != 1:
        raise AssertionError(f"{HOLE} must be in the document once")
    return body.replace(hole, raw)


def sign_in(d: Deployment) -> str:
    async def run() -> str:
        async with d.client() as c:
            await c.sign_in()
            return c.sign_no

    return asyncio.run(run())


class Rows:
    """Row counts of the tables a request could change, from a connection of its own
    on its own event loop (the tests that use it are synchronous)."""

    SQL = (
        "SELECT (SELECT count(*) FROM tx_log), (SELECT count(*) FROM visits),"
        " (SELECT count(*) FROM journal_entries)"
    )

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: asyncpg.Connection = self._loop.run_until_complete(asyncpg.connect(dsn))

    def count(self) -> tuple[int, int, int]:
        row = self._loop.run_until_complete(self._conn.fetchrow(self.SQL))
        return (row[0], row[1], row[2])

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()
