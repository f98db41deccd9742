"""The body check of the HTTP edge (engine.edge), without a server: every defect gets
its exact status, result code and `err_msg` path; a model of JSON trees serialized
byte by byte (raw or escaped characters, duplicate keys, NUL, lone surrogates, invalid
UTF-8, deep nesting) gets the verdict the model predicts; the fast tier never passes
a body the exact tier refuses, and bodies as common encoders write them take it; a
clean 2204 body costs about one msgspec decode and encode. The same defects through a
real engine: tests/e2e/test_body_edge.py and tests/fuzz/test_signed_envelope_bytes.py."""

from __future__ import annotations

import decimal
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import constants, edge
from terminals import signing
from terminals.results import ResultCode

DEPTH = constants.HTTP_BODY_DEPTH_MAX
MALFORMED, FIELD = ResultCode.request_body_malformed, ResultCode.field_invalid


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    ("body", "status", "code", "err_msg"),
    [
        (b'{"opter_name":"\xff"}', 400, MALFORMED, "body: not valid UTF-8 at byte 15"),
        (b'{"input":{"da\xc3ta":1}}', 400, MALFORMED, "body: not valid UTF-8 at byte 13"),
        (b'{"a":"\xed\xa0\x80"}', 400, MALFORMED, "body: not valid UTF-8 at byte 6"),
        (b'{"a":"\xc0\xaf"}', 400, MALFORMED, "body: not valid UTF-8 at byte 6"),
        (
            b'{"input":' + nested(DEPTH) + b"}",
            400,
            MALFORMED,
            f"body: nested deeper than {DEPTH} levels at input" + "[0]" * (DEPTH - 1),
        ),
        (nested(100_000), 400, MALFORMED, f"body: nested deeper than {DEPTH} levels"),
        (
            b'{"input":{"data":{"psn_no":"1","psn_no":"1"}}}',
            200,
            FIELD,
            "input.data.psn_no: duplicate key",
        ),
        (b'{"msgid":"1","m\\u0073gid":"2"}', 200, FIELD, "msgid: duplicate key"),
        (b'[{"a":1},{"a":1,"a":2}]', 200, FIELD, "[1].a: duplicate key"),
        (
            b'{"input":{"data":{"psn_name":"\\u0000"}}}',
            200,
            FIELD,
            "input.data.psn_name: NUL character not allowed",
        ),
        (
            b'{"input":{"data":{"psn_name":"a\x00"}}}',
            200,
            FIELD,
            "input.data.psn_name: NUL character not allowed",
        ),
        (
            b'{"input":{"da\\u0000ta":{}}}',
            200,
            FIELD,
            "input.da\\u0000ta: NUL character not allowed in a key",
        ),
        (
            b'{"input":{"data":{"psn_name":"\\ud800"}}}',
            200,
            FIELD,
            "input.data.psn_name: lone surrogate \\ud800 not allowed",
        ),
        (
            b'{"input":{"data":{"psn_name":"\\uDFFF"}}}',
            200,
            FIELD,
            "input.data.psn_name: lone surrogate \\udfff not allowed",
        ),
        (
            b'{"input":{"data":{"psn_name":"\\ud800A"}}}',
            200,
            FIELD,
            "input.data.psn_name: lone surrogate \\ud800 not allowed",
        ),
        (
            b'{"input":{"data":{"psn_name":"\\ud800\\u0041"}}}',
            200,
            FIELD,
            "input.data.psn_name: lone surrogate \\ud800 not allowed",
        ),
        (
            b'{"\\udc00":1}',
            200,
            FIELD,
            "\\udc00: lone surrogate \\udc00 not allowed in a key",
        ),
    ],
)
def test_each_defect_has_its_status_code_and_path(
    body: bytes, status: int, code: ResultCode, err_msg: str
) -> None:
    assert edge.check_body(body) == edge.BodyRefusal(status, code, err_msg)


@pytest.mark.parametrize("body", [b"", b'{"a":"x"}\x00', b'{"a":', b"[1,]"])
def test_a_malformed_body_keeps_the_envelope_decoders_words(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError) as decoder:
        msgspec.json.decode(body)
    assert edge.check_body(body) == edge.BodyRefusal(400, MALFORMED, f"body: {decoder.value}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"input":' + nested(DEPTH - 1) + b"}",
        b'{"a":"\\ud842\\udfb7","b":"\xf0\xa0\xae\xb7"}',  # 𠮷 escaped and raw
        b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[","b":"\\"]]]]]\\\\"}',
        b'{"a":"09:30:00","b\\u003a":"\\u003A"}',
        b'{"a":"\\\\u0000"}',  # the text \u0000, not a NUL
        b'{"a":1e400,"b":' + b"9" * 5000 + b"}",  # numbers are the Structs' business
        b'{"a":NaN,"b":"\x01"}',  # malformed: the envelope decoder's 400, as before
    ],
)
def test_bodies_without_those_defects_pass(body: bytes) -> None:
    assert edge.check_body(body) is None


def test_a_key_in_an_error_is_cut_and_escaped() -> None:
    key = json.dumps("k\x01" + "x" * 500)
    refused = edge.check_body(f'{{"input":[{{{key}:1,{key}:2}}]}}'.encode())
    assert refused is not None
    shown = "k\\u0001" + "x" * (constants.HTTP_ERR_KEY_CHARS_MAX - 7) + "…"
    assert refused.err_msg == f"input[0].{shown}: duplicate key"


def test_too_large_names_the_limit() -> None:
    assert edge.too_large() == edge.BodyRefusal(
        413,
        ResultCode.request_body_too_large,
        f"body: larger than {constants.HTTP_BODY_BYTES_MAX} bytes",
    )


def test_upper_case_signature_hex_is_well_formed_and_verifies() -> None:
    key, parts = bytes(range(32)), ("POST", "/api/v1/tx", "1764380000", "n" * 16, b"{}")
    sig = signing.signature(key, *parts)
    for variant in (sig.upper(), sig[:32].upper() + sig[32:]):
        assert signing.SIGNATURE_RE.match(variant)
        assert signing.verify(key, *parts, variant)
    assert not signing.SIGNATURE_RE.match(sig[:-1] + "g")


# --- a model of bodies, serialized byte by byte ------------------------------------------

HIGH, LOW = "[\ud800-\udbff]", "[\udc00-\udfff]"


@dataclass(frozen=True)
class Bad:
    """Bytes that are not UTF-8, written raw into a string."""

    raw: bytes


@dataclass(frozen=True)
class Text:
    parts: tuple[str | Bad, ...]

    @property
    def value(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Obj:
    pairs: tuple[tuple[Text, Any], ...]


BAD_UTF8 = [b"\xff", b"\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]
PIECES = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", ":", "[", "]", "{", '"', "\\", "😀"]


def _no_pairs(text: str) -> str:
    """Lone surrogates stay lone: a high one right before a low one would be a pair."""
    return re.sub(f"({HIGH})(?={LOW})", r"\1x", text)


def _text(parts: list[str | Bad]) -> Text:
    """Adjacent characters joined, so that `_no_pairs` sees them all; of adjacent bad
    bytes only the first kept, so that two halves cannot make one character."""
    joined: list[str | Bad] = []
    for part in filter(None, parts):
        last = joined[-1] if joined else None
        if isinstance(part, str) and isinstance(last, str):
            joined[-1] = last + part
        elif not (isinstance(part, Bad) and isinstance(last, Bad)):
            joined.append(part)
    return Text(tuple(_no_pairs(p) if isinstance(p, str) else p for p in joined))


def texts(bad_utf8: bool) -> st.SearchStrategy[Text]:
    piece: st.SearchStrategy[str | Bad] = st.text(max_size=4) | st.sampled_from(PIECES)
    if bad_utf8:
        piece = piece | st.sampled_from(BAD_UTF8).map(Bad)
    return st.lists(piece, max_size=4).map(_text)


def trees(bad_utf8: bool) -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | texts(bad_utf8)
    return st.recursive(
        leaves,
        lambda kids: (
            st.lists(kids, max_size=3)
            | st.lists(st.tuples(texts(bad_utf8), kids), max_size=3).map(lambda p: Obj(tuple(p)))
        ),
        max_leaves=12,
    )


def deepen(tree: Any, levels: int) -> Any:
    for _ in range(levels):
        tree = [tree]
    return tree


class Writer:
    """JSON text of a model tree, each character raw or escaped at random; records
    where the first invalid UTF-8 went."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.out, self.first_bad = rng, bytearray(), -1

    def space(self) -> None:
        self.out += self.rng.choice([b"", b"", b" ", b"\n  "])

    def char(self, c: str) -> None:
        escape = self.rng.random() < 0.3
        if c in '"\\':
            self.out += rb"\u%04x" % ord(c) if escape else b"\\" + c.encode()
        elif c == "\x00":
            self.out += rb"\u0000" if escape else b"\x00"
        elif 0xD800 <= ord(c) <= 0xDFFF or escape or ord(c) < 0x20:
            for unit in c.encode("utf-16-be", "surrogatepass").hex(" ", 2).split():
                code = unit.upper() if self.rng.random() < 0.5 else unit
                self.out += rb"\u" + code.encode()
        else:
            self.out += c.encode()

    def text(self, t: Text) -> None:
        self.out += b'"'
        for part in t.parts:
            if isinstance(part, Bad):
                if self.first_bad < 0:
                    self.first_bad = len(self.out)
                self.out += part.raw
            else:
                for c in part:
                    self.char(c)
        self.out += b'"'

    def node(self, n: Any) -> None:
        self.space()
        if isinstance(n, Text):
            self.text(n)
        elif isinstance(n, Obj):
            self.out += b"{"
            for i, (key, value) in enumerate(n.pairs):
                self.out += b"," if i else b""
                self.space()
                self.text(key)
                self.space()
                self.out += b":"
                self.node(value)
            self.out += b"}"
        elif isinstance(n, list):
            self.out += b"["
            for i, item in enumerate(n):
                self.out += b"," if i else b""
                self.node(item)
            self.out += b"]"
        else:
            self.out += json.dumps(n).encode()
        self.space()


def expected(tree: Any, first_bad: int) -> edge.BodyRefusal | None:
    """What the model says: UTF-8 first, then the first defect in document order."""
    if first_bad >= 0:
        return edge.BodyRefusal(400, MALFORMED, f"body: not valid UTF-8 at byte {first_bad}")
    return first_defect(tree, [], 1)


def first_defect(n: Any, path: list[str | int], depth: int) -> edge.BodyRefusal | None:
    if isinstance(n, Text):
        return char_defect(n.value, path, "")
    if not isinstance(n, Obj | list):
        return None
    if depth > DEPTH:
        return edge.BodyRefusal(
            400, MALFORMED, f"body: nested deeper than {DEPTH} levels at {show(path)}"
        )
    if isinstance(n, list):
        for i, item in enumerate(n):
            found = first_defect(item, [*path, i], depth + 1)
            if found:
                return found
        return None
    seen = set()
    for key, value in n.pairs:
        here: list[str | int] = [*path, key.value]
        found = char_defect(key.value, here, " in a key")
        if found is None and key.value in seen:
            found = edge.BodyRefusal(200, FIELD, f"{show(here)}: duplicate key")
        seen.add(key.value)
        found = found or first_defect(value, here, depth + 1)
        if found:
            return found
    return None


def char_defect(value: str, path: list[str | int], where: str) -> edge.BodyRefusal | None:
    for c in value:
        if c == "\x00":
            return edge.BodyRefusal(200, FIELD, f"{show(path)}: NUL character not allowed{where}")
        if 0xD800 <= ord(c) <= 0xDFFF:
            reason = f"lone surrogate \\u{ord(c):04x} not allowed{where}"
            return edge.BodyRefusal(200, FIELD, f"{show(path)}: {reason}")
    return None


def show(path: list[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        part = re.sub("[\x00-\x1f\x7f\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", part)
        if len(part) > constants.HTTP_ERR_KEY_CHARS_MAX:
            part = part[: constants.HTTP_ERR_KEY_CHARS_MAX] + "…"
        out += f".{part}" if out else part
    return out or "body"


@settings(max_examples=600, deadline=None)
@given(
    tree=st.booleans().flatmap(trees),
    levels=st.sampled_from([0, 0, 0, DEPTH - 3, DEPTH - 2, DEPTH - 1, DEPTH]),
    seed=st.integers(0, 2**32),
)
def test_the_verdict_is_the_models_and_the_fast_tier_never_passes_a_defect(
    tree: Any, levels: int, seed: int
) -> None:
    writer = Writer(random.Random(seed))
    writer.node(deepen(tree, levels))
    body = bytes(writer.out)
    want = expected(deepen(tree, levels), writer.first_bad)
    assert edge.check_body(body) == want, body
    if edge._proven_clean(body):
        assert want is None, body


# Text without NUL (hypothesis writes no surrogates) and without a backslash before a
# `u`, which an encoder writes as a literal `\\u...` that looks like an escape.
clean_text = st.text().filter(lambda s: "\x00" not in s and "\\u" not in s)
json_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_text,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(clean_text.filter(lambda s: len(s) < 6), kids, max_size=4)
    ),
    max_leaves=20,
)
ENCODERS = {
    "msgspec": msgspec.json.encode,
    "ascii": lambda t: json.dumps(t).encode(),
    "indent": lambda t: json.dumps(t, indent=2, ensure_ascii=False).encode(),
    "spaced": lambda t: json.dumps(t, separators=(" , ", " : ")).encode(),
}


@settings(max_examples=300, deadline=None)
@given(
    tree=json_trees,
    levels=st.sampled_from([0, 0, DEPTH - 2, DEPTH]),
    style=st.sampled_from(sorted(ENCODERS)),
)
def test_bodies_as_common_encoders_write_them_take_the_fast_tier(
    tree: Any, levels: int, style: str
) -> None:
    tree = deepen(tree, levels)
    body = ENCODERS[style](tree)
    if max_depth(tree) <= DEPTH:
        assert edge._proven_clean(body), body
    else:
        refused = edge.check_body(body)
        assert refused is not None and refused.status == 400, (refused, body)


def max_depth(tree: Any) -> int:
    if isinstance(tree, dict):
        return 1 + max(map(max_depth, tree.values()), default=0)
    if isinstance(tree, list):
        return 1 + max(map(max_depth, tree), default=0)
    return 0


# --- cost ---------------------------------------------------------------------------------


def fee_line(n: int) -> dict[str, Any]:
    """The fields tests/e2e/helpers.fee_line sets, as the SDK writes them."""
    return {
        "feedetl_sn": f"{n:04d}",
        "mdtrt_id": "M5101002026112900000001",
        "psn_no": "P510100000000001234",
        "chrg_bchno": "B001",
        "fee_ocur_time": "2026-11-29 09:30:00",
        "med_list_codg": "TJIA0001",
        "medins_list_codg": "LTJIA0001",
        "det_item_fee_sumamt": decimal.Decimal("25.00"),
        "cnt": decimal.Decimal("2"),
        "pric": decimal.Decimal("12.50"),
    }


def body_2204(lines: int = 50) -> bytes:
    envelope = {
        "infno": "2204",
        "msgid": "H51010000001202611290930000001",
        "mdtrtarea_admvs": "510100",
        "insuplc_admdvs": "510100",
        "recer_sys_code": "YKT",
        "infver": "V1.0",
        "opter_type": "1",
        "opter": "OP001",
        "opter_name": "收费员甲",
        "inf_time": "2026-11-29 09:30:00",
        "fixmedins_code": "H51010000001",
        "fixmedins_name": "成都市第一人民医院",
        "sign_no": "S20261129000001",
        "input": {"feedetail": [fee_line(i + 1) for i in range(lines)]},
    }
    return msgspec.json.Encoder(decimal_format="number").encode(envelope)


def test_a_clean_2204_body_takes_the_fast_tier() -> None:
    """A clean 2204 with 50 fee lines is proven clean without the exact tier (what that
    saves is measured by tests/bench/test_edge_bench.py, never asserted here: timings
    do not belong in unit tests)."""
    body = body_2204()
    assert edge._proven_clean(body)
    assert edge.check_body(body) is None
