"""2205 门诊费用明细撤销 cancel unsettled fee details of a visit: one charge batch
(`chrg_bchno`) or, with `0000`, every unsettled detail."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2205"
NAME = "cancel outpatient fee details"
ALL_BATCHES = "0000"


class Data(In, frozen=True, kw_only=True):
    mdtrt_id: f.Id30
    chrg_bchno: f.Id30
    psn_no: f.Id30


class Input(In, frozen=True, kw_only=True):
    data: Data


class Output(Out, frozen=True, kw_only=True):
    pass
