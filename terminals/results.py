"""Result codes of the settlement protocol: one enum, stable numbers, sentence-like
names (STYLE.md §5).

On the wire the national envelope says only `infcode` 0 (success) or -1 (failure) and
an `err_msg`; yikatong adds `yk_code` (the number) and `yk_result` (the name) to every
answer so that integrators can branch on a stable value instead of parsing text.
Numbers never change meaning once released; new outcomes get new numbers.

Groups: 1xxx the request itself, 11xx authentication and session, 12xx idempotency,
13xx card and e-card authentication, 2xxx reference data (persons, institutions,
policy), 3xxx visits and fee details, 4xxx settlements, 9xxx operating conditions
(try again, except `hsm_misconfigured`: see `retryable`).

13xx in detail (9301 card challenge, 1101 by card `03` and by e-card `01`):
1301-1309 the social security card. A challenge is bound to the terminal and the
card it was issued for: presented by another terminal or for another card it is
`card_challenge_unknown` (and stays unconsumed for its rightful owner). A challenge
that matched is consumed even when the answer is a refusal, so each challenge gets
exactly one cryptogram check (`card_cryptogram_mismatch`, `card_revoked`,
`card_expired`, `card_person_mismatch` all burn it); `card_unknown` and
`auth_data_missing` are refused before any challenge is looked at.
`card_person_mismatch` also answers an e-card whose holder data (or the certno and
name sent beside it) differ from the insured person's record.
1321-1325 the e-card QR token. Its id is burned only once its signature, validity
window and id all passed, so a malformed, forged, expired or mismatched token burns
nothing; a second use of a burned id is `ecard_token_already_used`, and a genuine
token whose person is unknown here is burned and answered `person_not_found`.
1331-1336 the card proof a money transaction carries (2201, 2207 with
`mdtrt_cert_type` 01 or 03: `data.yk_cred_ref`, the `yk_card_proof.cred_ref` of the
1101 that read the card): missing, not issued (forged, or for the other credential
type), issued to another terminal, for another person, revoked (the card no longer
active), expired. None of them changes anything. `cert_type_not_supported` (2005)
answers a 2201 or 2207 by ID number (02) where the insured region's policy requires the
card or e-card.
"""

from __future__ import annotations

import enum


class ResultCode(enum.IntEnum):
    ok = 0

    request_body_malformed = 1001
    field_invalid = 1002
    infno_unknown = 1003
    institution_mismatch = 1004
    # A body over the engine's size limit (256 KiB): HTTP 413, refused before it is read whole.
    request_body_too_large = 1005

    signature_missing = 1101
    signature_invalid = 1102
    timestamp_outside_window = 1103
    nonce_replayed = 1104
    terminal_unknown = 1105
    sign_in_required = 1110
    sign_no_unknown = 1111
    sign_no_signed_out = 1112
    operator_not_signed_in = 1113
    operator_unknown = 1114

    msgid_reused_with_different_body = 1201
    msgid_reversed = 1202

    card_unknown = 1301
    card_cryptogram_mismatch = 1302
    card_challenge_unknown = 1303
    card_challenge_expired = 1304
    card_challenge_already_used = 1305
    card_revoked = 1306
    card_expired = 1307
    card_person_mismatch = 1308
    auth_data_missing = 1309
    ecard_token_malformed = 1321
    ecard_token_signature_invalid = 1322
    ecard_token_expired = 1323
    ecard_token_already_used = 1324
    ecard_token_id_mismatch = 1325
    card_proof_missing = 1331
    card_proof_unknown = 1332
    card_proof_other_terminal = 1333
    card_proof_other_person = 1334
    card_proof_revoked = 1335
    card_proof_expired = 1336

    person_not_found = 2001
    person_region_mismatch = 2002
    person_not_insured = 2003
    insutype_not_held = 2004
    cert_type_not_supported = 2005
    policy_not_found = 2006

    visit_not_found = 3001
    visit_cancelled = 3002
    visit_has_settlement = 3003
    visit_person_mismatch = 3004
    visit_outpatient_number_duplicate = 3005
    fee_detail_duplicate = 3101
    fee_detail_amount_mismatch = 3102
    fee_details_none_unsettled = 3103
    fee_details_batch_not_found = 3104

    medfee_sumamt_mismatch = 4001
    settlement_not_found = 4002
    settlement_already_cancelled = 4003
    visit_already_settled = 4004
    settlement_visit_mismatch = 4005
    reversal_not_supported = 4101
    reversal_person_mismatch = 4102
    # 2601 of a 2208/2103 that committed, when the settlement cannot be put back (the
    # visit, its details, the account or the year's limits changed since): the
    # cancellation stands; settle anew if the patient still owes the bill.
    reversal_cancellation_stands = 4103

    database_unavailable = 9001
    overloaded = 9002
    hsm_unavailable = 9003
    # The engine's HSM keys or algorithms are not set up for the operation (a key label
    # missing, a key of the wrong type or usage): HTTP 503 without Retry-After, and the
    # same answer to every retry until an operator fixes the configuration.
    hsm_misconfigured = 9004

    @property
    def retryable(self) -> bool:
        """True for operating conditions where the same request may succeed later."""
        return self >= 9000 and self is not ResultCode.hsm_misconfigured
