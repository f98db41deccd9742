"""From the wire to the domain: the transaction's `input` decoded into its Struct once,
field errors that name their field (`input.data.psn_no: ...`), and the protocol's
fixed-format date-time parsed without strptime."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import msgspec

from engine.txn.context import TxContext
from settlement.money import MoneyError
from settlement.refusals import Refusal, Refused
from terminals.envelope import INPUT_CHARS_MAX
from terminals.results import ResultCode


def field_refusal(exc: MoneyError, prefix: str = "input") -> Refused:
    return Refused(Refusal.field_invalid, f"{prefix}.{exc.field}: {exc.reason}")


def wire_datetime(value: str, field: str) -> dt.datetime:
    """`yyyy-MM-dd HH:mm:ss` (the pattern the Struct already checked) as a datetime;
    MoneyError naming the field when the date does not exist (2026-02-30). Sliced by
    position: the format is fixed, and strptime costs ten times as much."""
    try:
        return dt.datetime(
            int(value[0:4]),
            int(value[5:7]),
            int(value[8:10]),
            int(value[11:13]),
            int(value[14:16]),
            int(value[17:19]),
        )
    except ValueError:
        raise MoneyError(field, f"{value!r} is not a valid date and time") from None


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
