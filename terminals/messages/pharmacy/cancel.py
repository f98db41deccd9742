"""2103 药店结算撤销 cancel a pharmacy settlement by its setl_id: the exact negation of
its journal entry, the personal account refunded, the year's accumulators restored;
answered with the settlement's answer, every amount negated."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.setl import Output as Output

INFNO = "2103"
NAME = "pharmacy settlement cancel"


class Data(In, frozen=True, kw_only=True):
    setl_id: f.Id30
    mdtrt_id: f.Id30
    psn_no: f.Id30


class Input(In, frozen=True, kw_only=True):
    data: Data
