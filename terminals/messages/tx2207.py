"""2207 门诊结算 outpatient settlement: posts the split to the ledger, debits the
personal account and updates the person's accumulators, all in one database
transaction; `setl_id` identifies it for 2208 and reconciliation."""

from __future__ import annotations

from typing import Literal

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.setl import Output as Output

INFNO = "2207"
NAME = "outpatient settlement"


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
    invono: f.Code50 = ""
    fulamt_ownpay_amt: f.Yuan | None = None
    overlmt_selfpay: f.Yuan | None = None
    preselfpay_amt: f.Yuan | None = None
    inscp_scp_amt: f.Yuan | None = None


class Input(In, frozen=True, kw_only=True):
    data: Data
