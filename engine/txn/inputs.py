"""The transaction's `input` decoded into its Struct, once, with field errors that name
their field (`input.data.psn_no: ...`)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from engine.txn.context import TxContext
from terminals.envelope import INPUT_CHARS_MAX
from terminals.results import ResultCode

_PATH_RE = re.compile(r"^(.*?)(?: - at `\$\.?(.*)`)?$", re.DOTALL)


def field_message(exc: msgspec.ValidationError, prefix: str) -> str:
    """'Expected `str` of length <= 30 - at `$.data.psn_no`' -> 'input.data.psn_no: ...'."""
    match = _PATH_RE.match(str(exc))
    reason, path = (match.group(1), match.group(2)) if match else (str(exc), "")
    missing = re.match(r"Object missing required field `([^`]+)`", reason)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        reason = "required field missing"
    unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        reason = "unknown field"
    full = ".".join(p for p in (prefix, path) if p)
    return f"{full}: {reason[:1].lower()}{reason[1:]}"


class InputDecoder:
    """Decode `input` into one transaction's Struct (built once per input type); a bad
    field names itself."""

    def __init__(self, input_type: type[Any]) -> None:
        self._decoder = msgspec.json.Decoder(input_type)

    def decode(self, ctx: TxContext) -> ResultCode | None:
        """Set `ctx.input`, or refuse (on ctx) with the field named."""
        raw = bytes(ctx.envelope.input)
        if len(raw) > INPUT_CHARS_MAX * 4 or len(raw.decode("utf-8")) > INPUT_CHARS_MAX:
            return ctx.refuse(
                ResultCode.field_invalid, f"input: longer than {INPUT_CHARS_MAX} characters"
            )
        try:
            ctx.input = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return ctx.refuse(ResultCode.field_invalid, field_message(exc, "input"))
        return None
