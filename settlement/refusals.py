"""Why a decide function refuses: the domain's own reasons, in the order-free form of
an enum, with a message that names the field. The engine maps each reason to its
stable wire `ResultCode` in one table (engine/txn/refusal_codes.py), so the domain
never knows the wire's numbers."""

from __future__ import annotations

import enum

from msgspec import Struct


class Refusal(enum.Enum):
    field_invalid = enum.auto()
    # sign-in
    sign_in_required = enum.auto()
    sign_no_unknown = enum.auto()
    sign_no_signed_out = enum.auto()
    operator_not_signed_in = enum.auto()
    operator_unknown = enum.auto()
    # card and e-card authentication (settlement/cards.py)
    auth_data_missing = enum.auto()
    card_unknown = enum.auto()
    card_challenge_unknown = enum.auto()
    card_challenge_already_used = enum.auto()
    card_challenge_expired = enum.auto()
    card_cryptogram_mismatch = enum.auto()
    card_revoked = enum.auto()
    card_expired = enum.auto()
    card_person_mismatch = enum.auto()
    ecard_token_malformed = enum.auto()
    ecard_token_signature_invalid = enum.auto()
    ecard_token_expired = enum.auto()
    ecard_token_id_mismatch = enum.auto()
    ecard_token_already_used = enum.auto()
    # card proof bound to the money (settlement/proofs.py)
    card_proof_missing = enum.auto()
    card_proof_unknown = enum.auto()
    card_proof_other_terminal = enum.auto()
    card_proof_other_person = enum.auto()
    card_proof_revoked = enum.auto()
    card_proof_expired = enum.auto()
    cert_type_not_supported = enum.auto()
    # persons
    person_not_found = enum.auto()
    person_region_mismatch = enum.auto()
    person_not_insured = enum.auto()
    insutype_not_held = enum.auto()
    policy_not_found = enum.auto()
    # visits and their details
    visit_not_found = enum.auto()
    visit_cancelled = enum.auto()
    visit_person_mismatch = enum.auto()
    visit_outpatient_number_duplicate = enum.auto()
    fee_detail_duplicate = enum.auto()
    fee_detail_amount_mismatch = enum.auto()
    fee_details_none_unsettled = enum.auto()
    fee_details_batch_not_found = enum.auto()
    visit_has_settlement = enum.auto()
    # settlements
    medfee_sumamt_mismatch = enum.auto()
    visit_already_settled = enum.auto()
    settlement_not_found = enum.auto()
    settlement_visit_mismatch = enum.auto()
    settlement_already_cancelled = enum.auto()
    # reversals
    reversal_not_supported = enum.auto()
    reversal_person_mismatch = enum.auto()
    reversal_cancellation_stands = enum.auto()  # a cancel cannot be undone: things moved on


class Refused(Struct, frozen=True):
    """A decide function's refusal; `message` starts with the field it is about
    (`input.data.mdtrt_id: ...`)."""

    reason: Refusal
    message: str
