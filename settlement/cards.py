"""The decisions of card and e-card authentication (DESIGN.md §4, DOMAIN.md §3.3):
9301 card challenge and 1101 person info by social security card (`03`), by e-card
(`01`) or by ID number (`02`) — pure functions of the request, what the engine loaded,
what the HSM said about it and the engine's clock.

Each `decide_*` is one straight list of early returns: the order of its refusals is the
order of its `if`s. The rules they keep:

- A challenge is issued only for a card in the issuer's record; it is bound to the
  asking terminal and that card, valid `challenge_ttl_s` and single use. Presented by
  another terminal or for another card it is `card_challenge_unknown` and is not
  spent, so its rightful holder can still use it.
- A challenge that is this terminal's, for this card, live and unused is spent by the
  check that uses it: a cryptogram mismatch, a revoked or expired card and a holder
  mismatch are refusals that still write the burn (`PersonInfoDecision.refusal`), so
  every challenge gets at most one verdict. An unknown card, a stray or missing
  extension field and an unusable challenge spend nothing.
- An e-card token id is spent only once the token's signature, validity window and id
  passed; from then on every answer (the person unknown here, the holder's data not the
  token's) spends it, and a second use is `ecard_token_already_used`.
- The card's status and expiry are judged after the card proved itself, so a clone of
  a revoked card is a clone first.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from msgspec import Struct

from settlement.errors import DomainInvariantViolation
from settlement.outpatient import Person
from settlement.proofs import Credential, IssuedProof
from settlement.refusals import Refusal, Refused

CARD_SN = "input.data.card_sn"
CHALLENGE = "input.data.yk_card_auth.challenge"
ECARD_QR = "input.data.yk_ecard_qr"
CARD_STATUS_ACTIVE = "active"


class CardLimits(Struct, frozen=True):
    """The protocol's limits (engine.constants), passed in so that the domain holds none."""

    challenge_ttl_s: int
    ecard_lifetime_s_max: int
    ecard_clock_skew_s: int
    card_proof_ttl_s: int  # how long a 1101's credential reference carries 2201 / 2207


class Card(Struct, frozen=True):
    """A card in the issuer's record (`cards`)."""

    card_sn: str  # 32 upper-case hex digits
    card_no: str
    psn_no: str
    generation: int  # 2: 3DES keys, 3: SM4 keys
    status: str  # active | revoked
    expiry_date: dt.date


class Insured(Person, frozen=True):
    """An insured person as 1101 answers them: the outpatient flows' Person and the two
    fields only 1101 shows."""

    psn_insu_date: dt.date
    emp_name: str


# -- 9301 card challenge ----------------------------------------------------------------------


def ext_pairing_refusal(ext_process_factor: str, ext_challenge: str) -> Refused | None:
    """EXTERNAL AUTHENTICATE needs both of the card's values, or the request sends neither."""
    if bool(ext_process_factor) != bool(ext_challenge):
        return Refused(
            Refusal.field_invalid,
            "input.data.ext_challenge: ext_process_factor and ext_challenge go together",
        )
    return None


class ChallengeRequest(Struct, frozen=True, kw_only=True):
    card_sn: str  # upper-case
    terminal_id: str  # the asking terminal's
    ext_process_factor: bytes = b""  # both or neither (ext_pairing_refusal)
    ext_challenge: bytes = b""


class DrawnChallenge(Struct, frozen=True):
    """What the HSM gave: a fresh challenge and, when asked, the EXTERNAL AUTHENTICATE
    cryptogram under the card's external key."""

    challenge: bytes
    ext_cryptogram: bytes = b""


class ChallengeLoad(Struct, frozen=True):
    card: Card | None
    drawn: DrawnChallenge | None = None  # the HSM's part, added after the load


class ChallengeDecision(Struct, frozen=True):
    """The challenge row to store, and the answer's cryptogram."""

    challenge: bytes
    terminal_id: str
    card_sn: str
    created_at: dt.datetime
    expires_at: dt.datetime
    ext_cryptogram: bytes


def known_card(load: ChallengeLoad) -> Refused | Card:
    """Before the HSM is asked anything: the card must be in the issuer's record (its
    status and expiry are judged at 1101, once it has proved itself)."""
    if load.card is None:
        return Refused(Refusal.card_unknown, f"{CARD_SN}: no such card issued")
    return load.card


def decide_challenge(
    req: ChallengeRequest, load: ChallengeLoad, now: dt.datetime, limits: CardLimits
) -> Refused | ChallengeDecision:
    card = known_card(load)
    if isinstance(card, Refused):
        return card
    if load.drawn is None:
        raise DomainInvariantViolation("a 9301 decided before the HSM drew its challenge")
    return ChallengeDecision(
        challenge=load.drawn.challenge,
        terminal_id=req.terminal_id,
        card_sn=card.card_sn,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=limits.challenge_ttl_s),
        ext_cryptogram=load.drawn.ext_cryptogram,
    )


# -- 1101 person info -------------------------------------------------------------------------


class CardAnswer(Struct, frozen=True):
    """The card's INTERNAL AUTHENTICATE over the engine's challenge (`yk_card_auth`)."""

    card_sn: str  # upper-case
    challenge: bytes
    process_factor: bytes
    cryptogram: bytes

    def __repr__(self) -> str:  # cryptograms stay out of logs (STYLE.md §10)
        return "CardAnswer(<hidden>)"


class EcardClaims(Struct, frozen=True):
    """What an e-card token's payload says (its form already checked by card.ecard)."""

    token_id: str
    certno: str
    psn_name: str
    insuplc_admdvs: str
    iat: int  # unix s
    exp: int
    signed_part: bytes = b""  # what the platform's signature covers, for the HSM
    signature: bytes = b""

    def __repr__(self) -> str:
        return f"EcardClaims(token_id={self.token_id[:6]}..., iat={self.iat}, exp={self.exp})"


class PersonInfoRequest(Struct, frozen=True, kw_only=True):
    credential: Credential
    mdtrt_cert_no: str
    terminal_id: str  # the asking terminal's
    fixmedins_code: str = ""  # the asking terminal's institution
    # Holder data the terminal sends beside a card or e-card ("" = not sent).
    psn_cert_type: str = ""
    certno: str = ""
    psn_name: str = ""
    card: CardAnswer | None = None  # with Credential.card
    ecard: EcardClaims | None = None  # with Credential.ecard

    def __repr__(self) -> str:
        return f"PersonInfoRequest(credential={self.credential.name}, <credential hidden>)"


class PresentedChallenge(Struct, frozen=True):
    """The row of the challenge a 1101 by card presents, locked by the load."""

    terminal_id: str
    card_sn: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used: bool


class PersonInfoLoad(Struct, frozen=True):
    person: Insured | None = None  # by certno, by the token's certno, or the card's holder
    card: Card | None = None
    challenge: PresentedChallenge | None = None
    token_used: bool = False
    # The HSM's verdict, added after the load: the card's cryptogram or the token's
    # signature is genuine. None: the HSM was not asked.
    genuine: bool | None = None


class ChallengeBurn(Struct, frozen=True):
    challenge: bytes
    used_at: dt.datetime


class TokenBurn(Struct, frozen=True):
    token_id: str
    used_at: dt.datetime
    expires_at: dt.datetime  # after this the id may be forgotten: the token is dead anyway


class PersonInfoDecision(Struct, frozen=True, kw_only=True):
    """What 1101 writes, and its answer: the person, or `refusal` — a refusal that still
    writes, because the check that refused spent the credential."""

    person: Insured | None = None
    challenge_burn: ChallengeBurn | None = None
    token_burn: TokenBurn | None = None
    refusal: Refused | None = None
    proof: IssuedProof | None = None  # with the person, by card or e-card


def credential_refusal(
    credential: Credential, *, card_sn: str, card_auth: bool, ecard_qr: bool
) -> Refused | None:
    """Before any I/O: each extension belongs to one credential type (elsewhere it is a
    field error), and a card or e-card brings the data that authenticates it."""
    if card_auth and credential is not Credential.card:
        return Refused(
            Refusal.field_invalid, "input.data.yk_card_auth: only with mdtrt_cert_type 03"
        )
    if ecard_qr and credential is not Credential.ecard:
        return Refused(Refusal.field_invalid, f"{ECARD_QR}: only with mdtrt_cert_type 01")
    if credential is Credential.card and not (card_sn and card_auth):
        missing = "card_sn" if not card_sn else "yk_card_auth"
        return Refused(
            Refusal.auth_data_missing,
            f"input.data.{missing}: required when mdtrt_cert_type is 03",
        )
    if credential is Credential.ecard and not ecard_qr:
        return Refused(
            Refusal.auth_data_missing, f"{ECARD_QR}: required when mdtrt_cert_type is 01"
        )
    return None


def decide_person_info(
    req: PersonInfoRequest,
    load: PersonInfoLoad,
    now: dt.datetime,
    limits: CardLimits,
    cred_ref: str = "",
) -> Refused | PersonInfoDecision:
    """`cred_ref`: the reference a successful 1101 by card or e-card issues (drawn by
    the engine; settlement/proofs.py)."""
    if req.credential is Credential.certno:
        return decide_by_certno(load)
    if req.credential is Credential.card:
        decided = decide_by_card(req, load, now, limits)
    else:
        decided = decide_by_ecard(req, load, now, limits)
    if isinstance(decided, Refused) or decided.person is None:
        return decided
    if not cred_ref:
        raise DomainInvariantViolation("a 1101 by card or e-card decided without a cred_ref")
    proof = IssuedProof(
        cred_ref=cred_ref,
        credential=req.credential,
        psn_no=decided.person.psn_no,
        insuplc_admdvs=decided.person.insuplc_admdvs,
        terminal_id=req.terminal_id,
        fixmedins_code=req.fixmedins_code,
        card_sn=req.card.card_sn if req.card is not None else "",
        created_at=now,
        expires_at=now + dt.timedelta(seconds=limits.card_proof_ttl_s),
    )
    return msgspec.structs.replace(decided, proof=proof)


def decide_by_certno(load: PersonInfoLoad) -> Refused | PersonInfoDecision:
    if load.person is None:
        return Refused(
            Refusal.person_not_found, "input.data.mdtrt_cert_no: no insured person found"
        )
    return PersonInfoDecision(person=load.person)


def usable_challenge(
    req: PersonInfoRequest, load: PersonInfoLoad, now: dt.datetime, limits: CardLimits
) -> Refused | tuple[Card, PresentedChallenge]:
    """Before the HSM is asked: the card is in the issuer's record and the challenge is
    this terminal's, for this card, unused and live. Nothing is spent by these refusals."""
    if req.card is None:
        raise DomainInvariantViolation("1101 by card without yk_card_auth (credential_refusal)")
    card, challenge = load.card, load.challenge
    if card is None:
        return Refused(Refusal.card_unknown, f"{CARD_SN}: no such card issued")
    if challenge is None or (challenge.terminal_id, challenge.card_sn) != (
        req.terminal_id,
        card.card_sn,
    ):
        return Refused(
            Refusal.card_challenge_unknown,
            f"{CHALLENGE}: not issued by 9301 to this terminal for this card_sn",
        )
    if challenge.used:
        return Refused(Refusal.card_challenge_already_used, f"{CHALLENGE}: already used")
    if challenge.expires_at <= now:
        return Refused(
            Refusal.card_challenge_expired,
            f"{CHALLENGE}: expired ({limits.challenge_ttl_s} s); ask 9301 for a new one",
        )
    return card, challenge


def decide_by_card(
    req: PersonInfoRequest, load: PersonInfoLoad, now: dt.datetime, limits: CardLimits
) -> Refused | PersonInfoDecision:
    usable = usable_challenge(req, load, now, limits)
    if isinstance(usable, Refused):
        return usable
    card, challenge = usable
    if req.card is None or load.genuine is None:
        raise DomainInvariantViolation("1101 by card decided before the HSM verified it")
    # The used_at of a challenge is never before its created_at, whichever engine's
    # clock stamped which.
    burn = ChallengeBurn(req.card.challenge, max(now, challenge.created_at))
    if not load.genuine:
        return _spent(
            burn,
            Refusal.card_cryptogram_mismatch,
            "input.data.yk_card_auth.cryptogram: not this card's answer (clone or wrong data)",
        )
    if card.status != CARD_STATUS_ACTIVE:
        return _spent(burn, Refusal.card_revoked, f"{CARD_SN}: the card was revoked")
    if card.expiry_date < now.date():
        return _spent(
            burn,
            Refusal.card_expired,
            f"{CARD_SN}: the card expired on {card.expiry_date.isoformat()}",
        )
    if req.mdtrt_cert_no != card.card_no:
        return _spent(
            burn,
            Refusal.card_person_mismatch,
            "input.data.mdtrt_cert_no: is not the number of the card with this card_sn",
        )
    if load.person is None:
        raise DomainInvariantViolation("cards.psn_no references persons")
    mismatch = holder_refusal(req, load.person, "card")
    if mismatch is not None:
        return PersonInfoDecision(challenge_burn=burn, refusal=mismatch)
    return PersonInfoDecision(person=load.person, challenge_burn=burn)


def _spent(burn: ChallengeBurn, reason: Refusal, message: str) -> PersonInfoDecision:
    return PersonInfoDecision(challenge_burn=burn, refusal=Refused(reason, message))


def holder_refusal(req: PersonInfoRequest, person: Insured, what: str) -> Refused | None:
    """psn_cert_type, certno and psn_name, when the request sends them, must be the
    person's that the credential names."""
    for name, sent, theirs in (
        ("psn_cert_type", req.psn_cert_type, person.psn_cert_type),
        ("certno", req.certno, person.certno),
        ("psn_name", req.psn_name, person.psn_name),
    ):
        if sent and sent != theirs:
            return Refused(
                Refusal.card_person_mismatch,
                f"input.data.{name}: is not the holder's of this {what}",
            )
    return None


def token_window_refusal(
    claims: EcardClaims, now: dt.datetime, limits: CardLimits
) -> Refused | None:
    """At most the protocol's lifetime, and `now` inside it give or take the clock skew
    allowed between the issuing platform and the engine."""
    if claims.exp - claims.iat > limits.ecard_lifetime_s_max:
        return Refused(
            Refusal.ecard_token_malformed,
            f"{ECARD_QR}: valid for more than {limits.ecard_lifetime_s_max} s",
        )
    now_s, skew_s = now.timestamp(), limits.ecard_clock_skew_s
    if now_s < claims.iat - skew_s:
        return Refused(Refusal.ecard_token_expired, f"{ECARD_QR}: not valid yet")
    if now_s > claims.exp + skew_s:
        return Refused(Refusal.ecard_token_expired, f"{ECARD_QR}: expired")
    return None


def decide_by_ecard(
    req: PersonInfoRequest, load: PersonInfoLoad, now: dt.datetime, limits: CardLimits
) -> Refused | PersonInfoDecision:
    claims = req.ecard
    if claims is None or load.genuine is None:
        raise DomainInvariantViolation("1101 by e-card decided before the HSM verified it")
    if not load.genuine:
        return Refused(
            Refusal.ecard_token_signature_invalid, f"{ECARD_QR}: not signed by the e-card platform"
        )
    window = token_window_refusal(claims, now, limits)
    if window is not None:
        return window
    if req.mdtrt_cert_no != claims.token_id:
        return Refused(
            Refusal.ecard_token_id_mismatch,
            "input.data.mdtrt_cert_no: is not the id of the token in yk_ecard_qr",
        )
    if load.token_used:
        return Refused(Refusal.ecard_token_already_used, f"{ECARD_QR}: token already used")
    expires_at = dt.datetime.fromtimestamp(claims.exp + limits.ecard_clock_skew_s, dt.UTC)
    burn = TokenBurn(claims.token_id, now, expires_at)
    person = load.person
    if person is None:
        refusal = Refused(Refusal.person_not_found, f"{ECARD_QR}: no insured person found")
        return PersonInfoDecision(token_burn=burn, refusal=refusal)
    if (person.psn_name, person.insuplc_admdvs) != (claims.psn_name, claims.insuplc_admdvs):
        refusal = Refused(
            Refusal.card_person_mismatch,
            f"{ECARD_QR}: name or insured region differs from the insured person's record",
        )
        return PersonInfoDecision(token_burn=burn, refusal=refusal)
    mismatch = holder_refusal(req, person, "e-card")
    if mismatch is not None:
        return PersonInfoDecision(token_burn=burn, refusal=mismatch)
    return PersonInfoDecision(person=person, token_burn=burn)
