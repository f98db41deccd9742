"""The one table from the domain's refusal reasons to the wire's stable result codes."""

from __future__ import annotations

from types import MappingProxyType

from settlement.refusals import Refusal
from terminals.results import ResultCode

REFUSAL_CODES: MappingProxyType[Refusal, ResultCode] = MappingProxyType(
    {reason: ResultCode[reason.name] for reason in Refusal}
)
