"""Fuzzing the edge's body check at the byte level, through a real engine: valid, signed
envelopes (1101, 2201, 2204, 2207) with one string value or key of the envelope or of
`input` broken at a random place — invalid UTF-8, a NUL (raw or escaped), a lone
surrogate escape — or one value replaced by deep nesting or a very long string, or one
key repeated. Whatever the bytes: never HTTP 500, always the JSON answer (HTTP 200, 400
or 413) refusing the request, and no row of tx_log, visits or journal_entries comes or
goes. Where the defect decides the answer alone, the status and `err_msg` (byte offset
or path) are the documented ones."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import constants
from tests.e2e.conftest import Deployment
from tests.e2e.signed_bytes import HOLE, Rows, envelope, msgid, person_info, post, sign_in

pytestmark = pytest.mark.slow

DEPTH = constants.HTTP_BODY_DEPTH_MAX
Path = tuple[str | int, ...]

BAD_UTF8 = [
    b"\xff",
    b"\x80",
    b"\xc3(",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe4\xb8",
]
NULS = [b"\x00", b"\\u0000"]
# (bytes, the lone code unit the engine names)
SURROGATES = [
    (b"\\ud800", "d800"),
    (b"\\udfff", "dfff"),
    (b"\\uDBFF", "dbff"),
    (b"\\ud800A", "d800"),
    (b"\\ud800\\u0041", "d800"),
    (b"\\udc00\\ud800\\udc00", "dc00"),
]
# Text around an injection: nothing that JSON escapes or the error message rewrites.
around = st.text(alphabet="abcXYZ09 -名张", max_size=6).map(str.encode)


@pytest.fixture(scope="module")
def sign_no(deployment: Deployment) -> str:
    return sign_in(deployment)


@pytest.fixture(scope="module")
def rows(deployment: Deployment) -> Iterator[Rows]:
    counter = Rows(deployment.dsn)
    yield counter
    counter.close()


def templates(d: Deployment, sign_no: str) -> list[dict[str, Any]]:
    """Requests that each change something if they got through (1101 aside)."""
    person = d.pop.persons[-2]
    data = {
        "psn_no": person.psn_no,
        "insutype": person.insutype,
        "begntime": "2026-11-29 10:00:00",
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": person.certno,
        "ipt_otp_no": "FUZZBYTES",
    }
    line = {
        "feedetl_sn": "1",
        "mdtrt_id": "NOVISIT",
        "psn_no": person.psn_no,
        "chrg_bchno": "B1",
        "fee_ocur_time": "2026-11-29 10:00:00",
        "med_list_codg": "TJIA0001",
        "medins_list_codg": "L1",
        "det_item_fee_sumamt": 10.0,
        "cnt": 1,
        "pric": 10,
    }
    settle = {**{k: data[k] for k in ("psn_no", "insutype", "mdtrt_cert_no")}, "medfee_sumamt": 10}
    settle.update(mdtrt_cert_type="02", med_type="11", mdtrt_id="NOVISIT")
    return [
        person_info(d, sign_no, psn_name="张三"),
        envelope(d, sign_no, "2201", {"data": data}),
        envelope(d, sign_no, "2204", {"feedetail": [line, {**line, "feedetl_sn": "2"}]}),
        envelope(d, sign_no, "2207", {"data": settle}),
    ]


def places(node: Any, path: Path = ()) -> Iterator[tuple[str, Path]]:
    """(kind, path) of every key ("key"), string value ("str") and other scalar
    ("scalar"); the object or array holding one is at level len(path)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield "key", (*path, key)
            yield from places(value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from places(item, (*path, i))
    else:
        yield ("str" if isinstance(node, str) else "scalar"), path


# What each defect can break (duplicates are of keys; nesting and length replace values).
TARGETS = {
    "utf8": ("key", "str"),
    "nul": ("key", "str"),
    "surrogate": ("key", "str"),
    "dup": ("key",),
    "deep": ("str", "scalar"),
    "long": ("str", "scalar"),
}


def render(path: Path) -> str:
    """A path as the engine names it (engine.edge._render, short keys)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = re.sub("[\x00-\x1f\x7f\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", part)
            out += f".{shown}" if out else shown
    return out


def with_hole(doc: dict[str, Any], kind: str, path: Path) -> bytes:
    """`doc` encoded with HOLE where the key (or the value) at `path` was."""
    holder: Any = doc
    for part in path[:-1]:
        holder = holder[part]
    if kind == "key":
        items = [(HOLE if k == path[-1] else k, v) for k, v in holder.items()]
        holder.clear()
        holder.update(items)
    else:
        holder[path[-1]] = HOLE
    return msgspec.json.encode(doc)


def fill(body: bytes, raw: bytes) -> tuple[bytes, int]:
    """`body` with the quoted HOLE replaced by `raw`, and where `raw` starts."""
    hole = msgspec.json.encode(HOLE)
    at = body.index(hole)
    return body[:at] + raw + body[at + len(hole) :], at


# The answer a broken body must get: (status, err_msg, whole message or its start), or
# None where the transaction's Struct decides (any refusal).
Want = tuple[int, str, bool] | None


def broken(
    data: st.DataObject, body: bytes, defect: str, kind: str, path: Path
) -> tuple[bytes, Want]:
    if defect == "dup":
        key = str(path[-1]).encode()
        filled, _ = fill(body, b'"' + key + b'":"x","' + key + b'"')
        return filled, (200, f"{render(path)}: duplicate key", True)
    if defect == "deep":
        level = len(path)  # of the object or array holding the value
        levels = data.draw(st.sampled_from([1, DEPTH - level, DEPTH - level + 1, 40, 300, 5000]))
        filled, _ = fill(body, b"[" * levels + b"]" * levels)
        if level + levels <= DEPTH:
            return filled, None
        if levels > 500:  # past the interpreter's recursion limit: no path
            return filled, (400, f"body: nested deeper than {DEPTH} levels", False)
        at = render((*path, *[0] * (DEPTH - level)))
        return filled, (400, f"body: nested deeper than {DEPTH} levels at {at}", True)
    if defect == "long":
        size = data.draw(st.sampled_from([1_000, 40_001, 100_000, 300_000]))
        filled, _ = fill(body, msgspec.json.encode(data.draw(st.sampled_from("x名")) * size))
        return filled, None
    before, after = data.draw(around), data.draw(around)
    if defect == "utf8":
        bad = data.draw(st.sampled_from(BAD_UTF8))
        filled, at = fill(body, b'"' + before + bad + after + b'"')
        return filled, (400, f"body: not valid UTF-8 at byte {at + 1 + len(before)}", True)
    if defect == "nul":
        raw, reason = data.draw(st.sampled_from(NULS)), "NUL character"
    else:
        raw, unit = data.draw(st.sampled_from(SURROGATES))
        reason = f"lone surrogate \\u{unit}"
    text = b'"' + before + raw + after + b'"'
    filled, _ = fill(body, text)
    if kind == "str":
        return filled, (200, f"{render(path)}: {reason} not allowed", True)
    key = json.loads(text.decode(), strict=False)  # the key as decoded, to name it
    return filled, (200, f"{render((*path[:-1], key))}: {reason} not allowed in a key", True)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_broken_bytes_are_refused_with_json_and_change_nothing(
    deployment: Deployment, sign_no: str, rows: Rows, data: st.DataObject
) -> None:
    doc = data.draw(st.sampled_from(templates(deployment, sign_no)))
    doc["msgid"] = msgid(deployment)
    defect = data.draw(st.sampled_from(sorted(TARGETS)))
    kind, path = data.draw(st.sampled_from([p for p in places(doc) if p[0] in TARGETS[defect]]))
    body, want = broken(data, with_hole(doc, kind, path), defect, kind, path)
    event(f"{defect} in a {kind}")
    before = rows.count()
    reply = post(deployment, body)
    assert reply.status in (200, 400, 413), reply
    assert reply.content_type.startswith("application/json"), reply
    assert reply.answer["infcode"] == -1 and reply.answer["err_msg"], reply
    assert isinstance(reply.answer["yk_result"], str) and isinstance(reply.answer["yk_code"], int)
    if want is not None:
        status, err_msg, whole = want
        assert reply.status == status, (reply, want)
        got = reply.answer["err_msg"]
        assert got == err_msg if whole else got.startswith(err_msg), (reply, want)
    if reply.status == 413:
        assert len(body) > constants.HTTP_BODY_BYTES_MAX
    assert rows.count() == before


def test_ledger_balances_after_fuzzing(deployment: Deployment) -> None:
    report = asyncio.run(deployment.ledger())
    assert report.balanced, report.violations
