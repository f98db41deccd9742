"""From the wire to the domain: field errors that name their field, and the protocol's
fixed-format date-time parsed without strptime."""

from __future__ import annotations

import datetime as dt

from settlement.money import MoneyError
from settlement.refusals import Refusal, Refused


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
