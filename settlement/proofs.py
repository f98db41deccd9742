"""Card proof bound to the money (DESIGN.md §4): a 1101 by social security card (`03`)
or e-card (`01`) that succeeded leaves a short-lived credential reference for (person,
terminal, institution), and a 2201 or 2207 that names the card or e-card as its
credential must carry it. Without it a HIS could record "by card" for a patient whose
card nobody read.

`proof_refusal` is one straight list of early returns; its order is the order the
integrator fixes things in:

1. by ID number (`02`): allowed only where the insured region's policy says so
   (`PolicyParams.settle_by_id_number`), and then a reference is a field error (it
   would be ignored, and an integrator should learn that now);
2. by card or e-card: the reference must be sent, must be one this engine issued, for
   the same credential type, at this terminal of this institution (a reference from
   another workstation is refused without saying whose it is), for this person, not
   revoked since (the card reported lost, or the reference revoked), and not expired.

A reference is not single use: one card reading covers the registration and the
settlement at the same terminal while it is fresh. It is never spent, so a refusal
here changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum

from msgspec import Struct

from settlement.refusals import Refusal, Refused

CRED_REF = "input.data.yk_cred_ref"


class Credential(enum.Enum):
    """`mdtrt_cert_type` (DOMAIN.md §2.7); the name is the metrics' `method` label."""

    ecard = "01"
    certno = "02"
    card = "03"


class CardProof(Struct, frozen=True):
    """A credential reference as the load found it (`card_proofs`)."""

    cred_ref: str
    credential: Credential
    psn_no: str
    terminal_id: str
    fixmedins_code: str
    expires_at: dt.datetime
    # The reference was revoked, or the card it was issued for is no longer active.
    revoked: bool


class IssuedProof(Struct, frozen=True, kw_only=True):
    """The reference a successful 1101 by card or e-card writes and answers."""

    cred_ref: str  # 32 lower-case hex digits, drawn by the engine
    credential: Credential
    psn_no: str
    insuplc_admdvs: str
    terminal_id: str
    fixmedins_code: str
    card_sn: str  # "" for an e-card
    created_at: dt.datetime
    expires_at: dt.datetime


class Presented(Struct, frozen=True, kw_only=True):
    """What a money transaction says about its patient's credential."""

    credential: Credential
    cred_ref: str  # "" when not sent
    psn_no: str
    terminal_id: str
    fixmedins_code: str


def proof_refusal(
    presented: Presented,
    proof: CardProof | None,
    now: dt.datetime,
    *,
    id_number_allowed: bool,
) -> Refused | None:
    """None when the credential may carry this transaction; see the module docstring."""
    if presented.credential is Credential.certno:
        if not id_number_allowed:
            return Refused(
                Refusal.cert_type_not_supported,
                "input.data.mdtrt_cert_type: the insured region's policy does not allow"
                " settlement by ID number (02); read the card (03) or the e-card (01)",
            )
        if presented.cred_ref:
            return Refused(Refusal.field_invalid, f"{CRED_REF}: only with mdtrt_cert_type 01 or 03")
        return None
    if not presented.cred_ref:
        return Refused(
            Refusal.card_proof_missing,
            f"{CRED_REF}: required when mdtrt_cert_type is {presented.credential.value};"
            " it is the yk_card_proof.cred_ref of the 1101 that read the card",
        )
    if proof is None or proof.credential is not presented.credential:
        return Refused(
            Refusal.card_proof_unknown,
            f"{CRED_REF}: not issued by a 1101 by {presented.credential.name}",
        )
    if (proof.terminal_id, proof.fixmedins_code) != (
        presented.terminal_id,
        presented.fixmedins_code,
    ):
        return Refused(
            Refusal.card_proof_other_terminal,
            f"{CRED_REF}: issued to another terminal; read the card at this one",
        )
    if proof.psn_no != presented.psn_no:
        return Refused(
            Refusal.card_proof_other_person,
            f"{CRED_REF}: the card read was not psn_no {presented.psn_no}'s",
        )
    if proof.revoked:
        return Refused(
            Refusal.card_proof_revoked,
            f"{CRED_REF}: revoked (the card is no longer active)",
        )
    if proof.expires_at <= now:
        return Refused(
            Refusal.card_proof_expired,
            f"{CRED_REF}: expired at {proof.expires_at.isoformat()}; read the card again",
        )
    return None
