"""2208 门诊结算撤销 cancel a settlement: reverses its ledger entry, restores the
personal account and the accumulators; a settlement is cancelled at most once."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.setl import Output as Output

INFNO = "2208"
NAME = "cancel outpatient settlement"


class Data(In, frozen=True, kw_only=True):
    setl_id: f.Id30
    mdtrt_id: f.Id30
    psn_no: f.Id30


class Input(In, frozen=True, kw_only=True):
    data: Data
