"""2102 药店结算 pharmacy settlement: one request is one complete, durable settlement of
the basket — the purchase, its lines and their split, the journal entry, the personal
account and the year's accumulators, all in one database transaction; `setl_id` and
`mdtrt_id` identify it for 2103, 2601 and reconciliation."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from terminals import fields as f
from terminals.messages.base import In
from terminals.messages.pharmacy import presettle as presettle_msg
from terminals.messages.pharmacy.presettle import DETAILS_MAX, DrugDetail
from terminals.messages.pharmacy.presettle import Output as Output

INFNO = "2102"
NAME = "pharmacy settlement"


class DrugInfo(presettle_msg.DrugInfo, frozen=True, kw_only=True):
    """The 2101 fields plus the card proof (`yk_cred_ref`) a purchase by card or
    e-card carries."""

    # With mdtrt_cert_type 01 or 03: the 1101's yk_card_proof.cred_ref (1331-1336).
    yk_cred_ref: f.CredRef = ""


class Input(In, frozen=True, kw_only=True):
    druginfo: DrugInfo
    drugdetail: Annotated[list[DrugDetail], Meta(min_length=1, max_length=DETAILS_MAX)]
