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
    """The 2206 fields plus the invoice number, the HIS's own totals, which, when
    sent, must agree with the engine's split, and the card proof (`yk_cred_ref`)."""

    invono: f.Code50 = ""
    fulamt_ownpay_amt: f.Yuan | None = None
    overlmt_selfpay: f.Yuan | None = None
    preselfpay_amt: f.Yuan | None = None
    inscp_scp_amt: f.Yuan | None = None
    # With mdtrt_cert_type 01 or 03: the 1101's yk_card_proof.cred_ref (1331-1336).
    yk_cred_ref: f.CredRef = ""


class Input(In, frozen=True, kw_only=True):
    data: Data
