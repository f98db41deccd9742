"""2206 门诊预结算 trial settlement: the same split as 2207, nothing is posted."""

from __future__ import annotations

from typing import Literal

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.setl import Output as Output

INFNO = "2206"
NAME = "outpatient pre-settlement"


class Data(In, frozen=True, kw_only=True):
    psn_no: f.Id30
    mdtrt_cert_type: f.CertType
    mdtrt_cert_no: f.Code50
    med_type: f.MedType
    medfee_sumamt: f.Yuan
    psn_setlway: f.Code6 = "01"
    mdtrt_id: f.Id30
    chrg_bchno: f.OptId30 = ""
    insutype: f.Insutype
    acct_used_flag: Literal["0", "1"] = "1"


class Input(In, frozen=True, kw_only=True):
    data: Data
