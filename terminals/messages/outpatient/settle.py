"""2207 门诊结算 outpatient settlement: posts the split to the ledger, debits the
personal account and updates the person's accumulators, all in one database
transaction; `setl_id` identifies it for 2208 and reconciliation."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.outpatient import presettle as presettle_msg
from terminals.messages.setl import Output as Output

INFNO = "2207"
NAME = "outpatient settlement"


class Data(presettle_msg.Data, frozen=True, kw_only=True):
    """The 2206 fields plus the invoice number and the HIS's own totals, which, when
    sent, must agree with the engine's split."""

    invono: f.Code50 = ""
    fulamt_ownpay_amt: f.Yuan | None = None
    overlmt_selfpay: f.Yuan | None = None
    preselfpay_amt: f.Yuan | None = None
    inscp_scp_amt: f.Yuan | None = None


class Input(In, frozen=True, kw_only=True):
    data: Data
