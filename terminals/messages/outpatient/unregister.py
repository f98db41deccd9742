"""2202 门诊挂号撤销 cancel an outpatient registration (only without a live
settlement; unsettled fee details go with it)."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2202"
NAME = "cancel outpatient registration"


class Data(In, frozen=True, kw_only=True):
    psn_no: f.Id30
    mdtrt_id: f.Id30
    ipt_otp_no: f.Id30


class Input(In, frozen=True, kw_only=True):
    data: Data


class Output(Out, frozen=True, kw_only=True):
    pass
