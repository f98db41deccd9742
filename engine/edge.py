"""The edge of POST /api/v1/tx: what a signed body must be, and the one decode of its
envelope (DESIGN.md §2-3).

`decode_envelope` runs once the signature is verified: `check_body` first, then the
envelope decoder. `check_body` refuses, changing nothing, a body that

- is not valid UTF-8 (HTTP 400 `request_body_malformed`, "body: not valid UTF-8 at
  byte N"): `input` stays raw bytes past the envelope decoder, and its own decode would
  raise UnicodeDecodeError;
- nests arrays and objects deeper than `HTTP_BODY_DEPTH_MAX` (400, naming where): the
  JSON decoders recurse, and past about 1000 levels they raise RecursionError;
- repeats a key within an object (HTTP 200 `field_invalid`, "input.data.psn_no:
  duplicate key"): each decoder keeps one of the values, and a signed request must not
  mean different things to different readers;
- has a NUL (raw or `\\u0000`) or a lone surrogate escape (`\\udfff`, a high one not
  followed by a low one) in a string or a key (200 `field_invalid`, naming the path,
  "input.data.psn_name: NUL character not allowed"): PostgreSQL cannot store NUL in
  text, asyncpg cannot encode a surrogate, and both would fail deep in a transaction.

A raw NUL inside a string is, strictly, not JSON; it is named like an escaped one so
that the client learns which field. Everything else (other raw control characters,
NaN, a truncated body) is the envelope decoder's 400 as before, and the first defect
in document order is the one reported (invalid UTF-8 anywhere comes first).
`read_body` bounds the body by HTTP_BODY_BYTES_MAX; the caller answers 413 with
`too_large()`.

Why two tiers. The check is on every request's path. The obvious exact check — strict
decode, `json.loads` with an `object_pairs_hook`, a walk over every string — costs
about 235 µs for a 2204 with 50 fee lines (13 KB, ~1100 strings) on the development
VM, `json.loads` alone about 83 µs. So:

1. `_proven_clean` proves that a body has none of those defects, with C-speed steps
   only: one untyped msgspec decode (it checks the UTF-8 of every string and key and
   refuses raw control characters and every lone surrogate escape) and its re-encoding;
   a duplicate-key test without a Python-level walk — every key owns exactly one
   structural `:`, the decoded dicts keep one entry per distinct key, and the
   re-encoding writes every `:` of a string raw, so the body's colons (plus its
   `\\u003a` escapes) equal the re-encoding's exactly when no object repeats a key; and
   the depth from the re-encoding's quotes and brackets (`bytes.translate`, then
   `replace` passes). False proves nothing: it sends the body to the exact tier.
2. `_examine` is exact and names the path: strict UTF-8 decode, `json.loads` keeping
   each object's pairs (duplicates too) in order, one walk in document order bounded
   by the depth limit. It runs only for bodies tier 1 cannot prove clean: defective
   ones, and rare clean ones (a literal `\\\\u0000` text, a number msgspec cannot hold).

Cost, measured with pytest-benchmark (tests/bench/test_edge_bench.py, `taskset -c 1`,
2-vCPU AMD EPYC VM shared with other work) on that 2204 body as the SDK writes it:
`check_body` 59 µs min / 61 µs median, of which the msgspec decode and re-encode are
41 / 43 µs; the exact tier alone 294 / 302 µs. With Chinese text in every fee line
(18 KB) the check is about 95 µs. tests/unit/test_edge.py keeps the check under twice a
bare msgspec decode and re-encode of the same body. A defective 256 KiB body built to
be slow (tens of thousands of tiny objects) costs the exact tier about 40 ms.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from aiohttp import web

from engine import constants
from engine.txn.wire import field_message
from terminals.envelope import Envelope
from terminals.results import ResultCode


class BodyRefusal(msgspec.Struct, frozen=True):
    """The answer to a body refused at the edge: status, result code, `err_msg`."""

    status: int
    code: ResultCode
    err_msg: str


DEPTH_MAX = constants.HTTP_BODY_DEPTH_MAX

_envelope = msgspec.json.Decoder(Envelope)
_any = msgspec.json.Decoder()
_canonical = msgspec.json.Encoder()
# What tier 1 keeps of the canonical text (bytes.translate): quotes, colons and
# brackets, every bracket as a parenthesis (only the depth matters, not the kind).
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}:')
_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
# After json.loads, any surrogate left in a str came from a lone escape (strict UTF-8
# cannot carry one, and json.loads joins a high-low pair into one character).
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def check_body(body: bytes) -> BodyRefusal | None:
    """None when `body` may go on to the envelope decoder; else the refusal."""
    if _proven_clean(body):
        return None
    return _examine(body)


def decode_envelope(body: bytes) -> Envelope | BodyRefusal:
    """The envelope, decoded once; or the refusal: `check_body`'s first, then the
    decoder's own (a wrong field 200 naming it, a malformed body 400)."""
    refused = check_body(body)
    if refused is not None:
        return refused
    try:
        return _envelope.decode(body)
    except msgspec.ValidationError as exc:
        return BodyRefusal(200, ResultCode.field_invalid, field_message(exc, ""))
    except msgspec.DecodeError as exc:
        return _malformed(f"body: {exc}")


async def read_body(request: web.Request) -> bytes | None:
    """The whole body, or None when it is over HTTP_BODY_BYTES_MAX (a declared length
    over the limit is refused before a byte is read)."""
    declared = request.content_length
    if declared is not None and declared > constants.HTTP_BODY_BYTES_MAX:
        return None
    try:
        return await request.read()  # the app's client_max_size is the same limit
    except web.HTTPRequestEntityTooLarge:
        return None


def too_large() -> BodyRefusal:
    return BodyRefusal(
        413,
        ResultCode.request_body_too_large,
        f"body: larger than {constants.HTTP_BODY_BYTES_MAX} bytes",
    )


# --- tier 1: a proof of cleanliness at C speed ------------------------------------------


def _proven_clean(body: bytes) -> bool:
    """True only if `body` is JSON with none of the defects `check_body` refuses."""
    try:
        canonical = _canonical.encode(_any.decode(body))
    except (msgspec.MsgspecError, ValueError, RecursionError):
        # Malformed, invalid UTF-8 (UnicodeDecodeError), a lone surrogate, nested past
        # the interpreter's recursion limit, a number msgspec cannot hold: the exact
        # tier says which, if any, is a refusal.
        return False
    if b"\\" in canonical:
        # msgspec writes a NUL as \u0000 and every other character raw or with a short
        # escape: a canonical text without a backslash has no NUL.
        if b"\\u0000" in canonical:
            return False
        # With escaped backslashes and quotes gone, every quote opens or closes a string.
        canonical = canonical.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = canonical.translate(_AS_PARENS, _NOT_MARKS)
    # A \u003a in the body is a colon the canonical text shows raw; counting every
    # \u003X over-counts only when one is not a colon, and then the counts differ.
    escaped_colons = body.count(b"\\u003") if b"\\" in body else 0
    if body.count(b":") + escaped_colons != marks.count(b":"):
        return False
    # No key was dropped, so the canonical text has the body's tree and its depth.
    return _nests_within(marks.translate(None, b":"), DEPTH_MAX)


def _nests_within(shape: bytes, limit: int) -> bool:
    """Whether `shape` — the quotes and brackets (as parentheses) of a valid JSON text
    without escaped quotes, in order — nests at most `limit` deep.

    Quotes pair up in order: odd ones open a string, even ones close it, and what lies
    between is inside a string. In the usual body no string holds a bracket: then
    every run of adjacent quotes has even length, the non-overlapping `""` are half
    the quotes, and all quotes can go at once; otherwise adjacent pairs go (which
    keeps the parity of every quote after them) and the rest is split on quotes.
    Then each pass removes every innermost `()` pair: one level per pass."""
    if shape.count(b'"') == 2 * shape.count(b'""'):
        shape = shape.translate(None, b'"')
    else:
        shape = b"".join(shape.replace(b'""', b"").split(b'"')[::2])
    for _ in range(limit):
        if not shape:
            return True
        shape = shape.replace(b"()", b"")
    return not shape


# --- tier 2: the exact verdict with the path ---------------------------------------------


# A defect found by the walk: its reason and its path, innermost part first (the path
# is put together only on the way back up, so a clean walk builds none).
_Found = tuple[str, list[str | int]]
_TOO_DEEP = "nested too deep"


def _examine(body: bytes) -> BodyRefusal | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _malformed(f"body: not valid UTF-8 at byte {exc.start}")
    try:
        # An object becomes the tuple of its (key, value) pairs in order, duplicates
        # kept (an array stays a list). strict=False lets a raw NUL through to the walk,
        # which names its field; other raw control characters are left to the envelope
        # decoder (400). Numbers are not looked at: `len` is a cheap C call in their
        # place (int() would take quadratic time, and refuse 4300 digits and more).
        tree = json.loads(
            text,
            strict=False,
            object_pairs_hook=tuple,
            parse_int=len,
            parse_float=len,
            parse_constant=len,
        )
    except RecursionError:
        return _malformed(f"body: nested deeper than {DEPTH_MAX} levels")
    except ValueError as exc:
        return _malformed(f"body: {_decoder_message(body, exc)}")
    found = _first_problem(tree, 1)
    if found is None:
        return None
    reason, path = found
    path.reverse()
    if reason == _TOO_DEEP:
        return _malformed(f"body: nested deeper than {DEPTH_MAX} levels at {_render(path)}")
    return _field(path, reason)


def _first_problem(node: Any, depth: int) -> _Found | None:
    """The first defect in document order in `node`, at `depth` (1 = the body)."""
    if isinstance(node, str):
        reason = _char_problem(node)
        return None if reason is None else (reason, [])
    if not isinstance(node, list | tuple):
        return None
    if depth > DEPTH_MAX:
        return _TOO_DEEP, []
    if isinstance(node, list):
        for index, item in enumerate(node):
            if not isinstance(item, str | list | tuple):  # a number, true, false, null
                continue
            if not item and depth < DEPTH_MAX:  # "", [] or {} within the limit
                continue
            found = _first_problem(item, depth + 1)
            if found is not None:
                found[1].append(index)
                return found
        return None
    seen: set[str] = set()
    for key, value in node:
        reason = _char_problem(key)
        if reason is not None:
            return f"{reason} in a key", [key]
        if key in seen:
            return "duplicate key", [key]
        seen.add(key)
        found = _first_problem(value, depth + 1)
        if found is not None:
            found[1].append(key)
            return found
    return None


def _char_problem(text: str) -> str | None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL character not allowed"
    return f"lone surrogate \\u{ord(found.group()):04x} not allowed"


def _field(path: list[str | int], reason: str) -> BodyRefusal:
    return BodyRefusal(200, ResultCode.field_invalid, f"{_render(path)}: {reason}")


def _malformed(err_msg: str) -> BodyRefusal:
    return BodyRefusal(400, ResultCode.request_body_malformed, err_msg)


def _render(path: list[str | int]) -> str:
    """`input.feedetail[0].pric`, the shape of the decoders' field errors; keys are
    cut and their unprintable characters written as escapes."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", part)
        if len(shown) > constants.HTTP_ERR_KEY_CHARS_MAX:
            shown = shown[: constants.HTTP_ERR_KEY_CHARS_MAX] + "…"
        out += f".{shown}" if out else shown
    return out or "body"


def _decoder_message(body: bytes, exc: ValueError) -> str:
    """The envelope decoder's words for a malformed body (the message clients have
    always had), or json's where msgspec does not object."""
    try:
        _any.decode(body)
    except msgspec.DecodeError as refused:
        return str(refused)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        pass
    return f"JSON is malformed: {exc}"
