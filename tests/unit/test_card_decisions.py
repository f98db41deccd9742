"""The card and e-card decide functions (settlement.cards) without a database or an HSM:
what the load found and what the HSM said go in as Structs, and out comes a refusal in
the documented order — naming its field, spending the credential exactly when the rule
says so — or the decision the write stores. One worked example per refusal and success
of 9301 and of 1101 by card, by e-card and by ID number."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from settlement.cards import (
    Card,
    CardAnswer,
    CardLimits,
    ChallengeBurn,
    ChallengeDecision,
    ChallengeLoad,
    ChallengeRequest,
    DrawnChallenge,
    EcardClaims,
    Insured,
    PersonInfoDecision,
    PersonInfoLoad,
    PersonInfoRequest,
    PresentedChallenge,
    TokenBurn,
    credential_refusal,
    decide_challenge,
    decide_person_info,
    ext_pairing_refusal,
)
from settlement.errors import DomainInvariantViolation
from settlement.proofs import Credential, IssuedProof
from settlement.refusals import Refusal, Refused

LIMITS = CardLimits(
    challenge_ttl_s=60, ecard_lifetime_s_max=60, ecard_clock_skew_s=5, card_proof_ttl_s=600
)
REF = "5eed" * 8  # the cred_ref the engine drew for this 1101
INSTITUTION = "H51010000001"
CST = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=CST)
TERMINAL, OTHER_TERMINAL = "T-H51010000001-01", "T-H51010000002-01"
CARD_SN, OTHER_CARD_SN = "510100D15600000500000001FFFFFFFF", "510100D15600000500000002FFFFFFFF"
CHALLENGE = bytes.fromhex("0102030405060708")
CARD = Card(
    card_sn=CARD_SN,
    card_no="S00000001",
    psn_no="P1",
    generation=3,
    status="active",
    expiry_date=dt.date(2030, 12, 31),
)
HOLDER = Insured(
    psn_no="P1",
    insuplc_admdvs="510100",
    psn_cert_type="01",
    certno="510104199001011234",
    psn_name="王伟",
    gend="1",
    naty="01",
    brdy=dt.date(1990, 1, 1),
    insutype="310",
    retired=False,
    psn_insu_stas="1",
    psn_insu_date=dt.date(2010, 1, 1),
    cvlserv_flag="0",
    emp_name="",
    acct_balance_fen=100_000,
)


# -- 9301 ---------------------------------------------------------------------------------


def challenge_request() -> ChallengeRequest:
    return ChallengeRequest(card_sn=CARD_SN, terminal_id=TERMINAL)


def test_9301_stores_the_hsms_challenge_for_60_s_bound_to_terminal_and_card() -> None:
    drawn = DrawnChallenge(CHALLENGE, bytes.fromhex("A1A2A3A4A5A6A7A8"))
    d = decide_challenge(challenge_request(), ChallengeLoad(CARD, drawn), NOW, LIMITS)
    assert d == ChallengeDecision(
        challenge=CHALLENGE,
        terminal_id=TERMINAL,
        card_sn=CARD_SN,
        created_at=NOW,
        expires_at=NOW + dt.timedelta(seconds=60),
        ext_cryptogram=drawn.ext_cryptogram,
    )


def test_9301_for_a_card_not_issued_is_card_unknown_whatever_its_status() -> None:
    d = decide_challenge(challenge_request(), ChallengeLoad(None), NOW, LIMITS)
    assert d == Refused(Refusal.card_unknown, "input.data.card_sn: no such card issued")
    revoked = msgspec.structs.replace(CARD, status="revoked", expiry_date=dt.date(2020, 1, 1))
    drawn = DrawnChallenge(CHALLENGE)
    assert isinstance(
        decide_challenge(challenge_request(), ChallengeLoad(revoked, drawn), NOW, LIMITS),
        ChallengeDecision,
    )  # status and expiry are judged at 1101, after the card proved itself


def test_9301_ext_values_go_together() -> None:
    assert ext_pairing_refusal("", "") is None
    assert ext_pairing_refusal("00" * 8, "11" * 8) is None
    for pf, ch in (("00" * 8, ""), ("", "11" * 8)):
        assert ext_pairing_refusal(pf, ch) == Refused(
            Refusal.field_invalid,
            "input.data.ext_challenge: ext_process_factor and ext_challenge go together",
        )


def test_9301_decided_without_the_hsms_challenge_is_a_bug() -> None:
    with pytest.raises(DomainInvariantViolation):
        decide_challenge(challenge_request(), ChallengeLoad(CARD), NOW, LIMITS)


# -- 1101: the request's own fields ---------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "fields", "reason", "message"),
    [
        (
            Credential.certno,
            {"card_auth": True},
            Refusal.field_invalid,
            "input.data.yk_card_auth: only with mdtrt_cert_type 03",
        ),
        (
            Credential.ecard,
            {"card_auth": True, "ecard_qr": True},
            Refusal.field_invalid,
            "input.data.yk_card_auth: only with mdtrt_cert_type 03",
        ),
        (
            Credential.card,
            {"card_sn": CARD_SN, "card_auth": True, "ecard_qr": True},
            Refusal.field_invalid,
            "input.data.yk_ecard_qr: only with mdtrt_cert_type 01",
        ),
        (
            Credential.card,
            {"card_auth": True},
            Refusal.auth_data_missing,
            "input.data.card_sn: required when mdtrt_cert_type is 03",
        ),
        (
            Credential.card,
            {"card_sn": CARD_SN},
            Refusal.auth_data_missing,
            "input.data.yk_card_auth: required when mdtrt_cert_type is 03",
        ),
        (
            Credential.ecard,
            {},
            Refusal.auth_data_missing,
            "input.data.yk_ecard_qr: required when mdtrt_cert_type is 01",
        ),
    ],
)
def test_stray_extension_fields_and_missing_auth_data_are_refused_before_any_io(
    credential: Credential, fields: dict[str, object], reason: Refusal, message: str
) -> None:
    args = {"card_sn": "", "card_auth": False, "ecard_qr": False, **fields}
    assert credential_refusal(credential, **args) == Refused(reason, message)  # type: ignore[arg-type]


def test_complete_credentials_pass_the_request_checks() -> None:
    assert (
        credential_refusal(Credential.certno, card_sn="", card_auth=False, ecard_qr=False) is None
    )
    assert (
        credential_refusal(Credential.card, card_sn=CARD_SN, card_auth=True, ecard_qr=False) is None
    )
    assert credential_refusal(Credential.ecard, card_sn="", card_auth=False, ecard_qr=True) is None
    # card_sn beside an ID number is ignored, as before
    assert (
        credential_refusal(Credential.certno, card_sn=CARD_SN, card_auth=False, ecard_qr=False)
        is None
    )


# -- 1101 by ID number ----------------------------------------------------------------------


def by_certno() -> PersonInfoRequest:
    return PersonInfoRequest(
        credential=Credential.certno, mdtrt_cert_no=HOLDER.certno, terminal_id=TERMINAL
    )


def test_by_id_number_answers_the_person_and_spends_nothing() -> None:
    d = decide_person_info(by_certno(), PersonInfoLoad(person=HOLDER), NOW, LIMITS, REF)
    assert d == PersonInfoDecision(person=HOLDER)


def test_by_id_number_of_nobody_insured_is_person_not_found() -> None:
    d = decide_person_info(by_certno(), PersonInfoLoad(), NOW, LIMITS, REF)
    assert d == Refused(
        Refusal.person_not_found, "input.data.mdtrt_cert_no: no insured person found"
    )


# -- 1101 by card ---------------------------------------------------------------------------


def by_card(
    *,
    mdtrt_cert_no: str = CARD.card_no,
    psn_cert_type: str = "",
    certno: str = HOLDER.certno,
    psn_name: str = HOLDER.psn_name,
) -> PersonInfoRequest:
    answer = CardAnswer(CARD_SN, CHALLENGE, bytes(8), bytes.fromhex("CAFEBABECAFEBABE"))
    return PersonInfoRequest(
        credential=Credential.card,
        mdtrt_cert_no=mdtrt_cert_no,
        terminal_id=TERMINAL,
        fixmedins_code=INSTITUTION,
        psn_cert_type=psn_cert_type,
        certno=certno,
        psn_name=psn_name,
        card=answer,
    )


def presented(
    *, terminal_id: str = TERMINAL, card_sn: str = CARD_SN, age_s: int = 10, used: bool = False
) -> PresentedChallenge:
    created = NOW - dt.timedelta(seconds=age_s)
    return PresentedChallenge(
        terminal_id=terminal_id,
        card_sn=card_sn,
        created_at=created,
        expires_at=created + dt.timedelta(seconds=60),
        used=used,
    )


def card_load(
    *,
    card: Card | None = CARD,
    challenge: PresentedChallenge | None = None,
    genuine: bool | None = True,
) -> PersonInfoLoad:
    return PersonInfoLoad(
        person=HOLDER if card is not None else None,
        card=card,
        challenge=presented() if challenge is None else challenge,
        genuine=genuine,
    )


BURN = ChallengeBurn(CHALLENGE, NOW)
# What a successful 1101 by card issues: a reference for (person, terminal,
# institution), valid the 600 s of LIMITS.
CARD_PROOF = IssuedProof(
    cred_ref=REF,
    credential=Credential.card,
    psn_no="P1",
    insuplc_admdvs="510100",
    terminal_id=TERMINAL,
    fixmedins_code=INSTITUTION,
    card_sn=CARD_SN,
    created_at=NOW,
    expires_at=NOW + dt.timedelta(seconds=600),
)


def spent(reason: Refusal, message: str) -> PersonInfoDecision:
    return PersonInfoDecision(challenge_burn=BURN, refusal=Refused(reason, message))


def test_a_genuine_card_answers_its_holder_and_burns_the_challenge() -> None:
    d = decide_person_info(by_card(), card_load(), NOW, LIMITS, REF)
    assert d == PersonInfoDecision(person=HOLDER, challenge_burn=BURN, proof=CARD_PROOF)


@pytest.mark.parametrize(
    ("load", "reason", "message"),
    [
        (card_load(card=None), Refusal.card_unknown, "input.data.card_sn: no such card issued"),
        (
            PersonInfoLoad(card=CARD, person=HOLDER),  # no such challenge at all
            Refusal.card_challenge_unknown,
            "input.data.yk_card_auth.challenge: not issued by 9301 to this terminal for this"
            " card_sn",
        ),
        (
            card_load(challenge=presented(terminal_id=OTHER_TERMINAL)),
            Refusal.card_challenge_unknown,
            "input.data.yk_card_auth.challenge: not issued by 9301 to this terminal for this"
            " card_sn",
        ),
        (
            card_load(challenge=presented(card_sn=OTHER_CARD_SN)),
            Refusal.card_challenge_unknown,
            "input.data.yk_card_auth.challenge: not issued by 9301 to this terminal for this"
            " card_sn",
        ),
        (
            card_load(challenge=presented(used=True)),
            Refusal.card_challenge_already_used,
            "input.data.yk_card_auth.challenge: already used",
        ),
        (
            card_load(challenge=presented(age_s=60)),
            Refusal.card_challenge_expired,
            "input.data.yk_card_auth.challenge: expired (60 s); ask 9301 for a new one",
        ),
        (
            card_load(challenge=presented(age_s=3600, used=True)),
            Refusal.card_challenge_already_used,  # used, then expired: used first, as before
            "input.data.yk_card_auth.challenge: already used",
        ),
    ],
)
def test_refusals_before_the_cryptogram_spend_nothing(
    load: PersonInfoLoad, reason: Refusal, message: str
) -> None:
    """An unknown card, a challenge that is another terminal's or card's, used or
    expired: refused without a write, so a foreign challenge stays usable."""
    assert decide_person_info(by_card(), load, NOW, LIMITS, REF) == Refused(reason, message)


def test_a_challenge_live_for_one_more_second_is_usable() -> None:
    d = decide_person_info(by_card(), card_load(challenge=presented(age_s=59)), NOW, LIMITS, REF)
    assert isinstance(d, PersonInfoDecision) and d.refusal is None


@pytest.mark.parametrize(
    ("request_", "load", "reason", "message"),
    [
        (
            by_card(),
            card_load(genuine=False),
            Refusal.card_cryptogram_mismatch,
            "input.data.yk_card_auth.cryptogram: not this card's answer (clone or wrong data)",
        ),
        (
            by_card(),
            card_load(card=msgspec.structs.replace(CARD, status="revoked")),
            Refusal.card_revoked,
            "input.data.card_sn: the card was revoked",
        ),
        (
            by_card(),
            card_load(card=msgspec.structs.replace(CARD, expiry_date=dt.date(2026, 5, 31))),
            Refusal.card_expired,
            "input.data.card_sn: the card expired on 2026-05-31",
        ),
        (
            by_card(mdtrt_cert_no="S00000002"),
            card_load(),
            Refusal.card_person_mismatch,
            "input.data.mdtrt_cert_no: is not the number of the card with this card_sn",
        ),
        (
            by_card(psn_cert_type="02"),
            card_load(),
            Refusal.card_person_mismatch,
            "input.data.psn_cert_type: is not the holder's of this card",
        ),
        (
            by_card(certno="510104199001019999"),
            card_load(),
            Refusal.card_person_mismatch,
            "input.data.certno: is not the holder's of this card",
        ),
        (
            by_card(psn_name="王伟甲"),
            card_load(),
            Refusal.card_person_mismatch,
            "input.data.psn_name: is not the holder's of this card",
        ),
    ],
)
def test_refusals_from_the_cryptogram_on_still_burn_the_challenge(
    request_: PersonInfoRequest, load: PersonInfoLoad, reason: Refusal, message: str
) -> None:
    """Each challenge gets one verdict: once the HSM checked it, every answer spends it."""
    assert decide_person_info(request_, load, NOW, LIMITS, REF) == spent(reason, message)


def test_a_clone_of_a_revoked_expired_card_is_a_clone_first() -> None:
    card = msgspec.structs.replace(CARD, status="revoked", expiry_date=dt.date(2020, 1, 1))
    d = decide_person_info(by_card(), card_load(card=card, genuine=False), NOW, LIMITS, REF)
    assert isinstance(d, PersonInfoDecision) and d.refusal is not None
    assert d.refusal.reason is Refusal.card_cryptogram_mismatch


def test_a_card_expiring_today_is_still_valid() -> None:
    card = msgspec.structs.replace(CARD, expiry_date=NOW.date())
    d = decide_person_info(by_card(), card_load(card=card), NOW, LIMITS, REF)
    assert d == PersonInfoDecision(person=HOLDER, challenge_burn=BURN, proof=CARD_PROOF)


def test_holder_fields_not_sent_are_not_compared() -> None:
    d = decide_person_info(by_card(certno="", psn_name=""), card_load(), NOW, LIMITS, REF)
    assert d == PersonInfoDecision(person=HOLDER, challenge_burn=BURN, proof=CARD_PROOF)


def test_the_burn_is_never_stamped_before_the_challenge_was_issued() -> None:
    """9301 served by an engine whose clock runs ahead: used_at = its created_at."""
    ahead = presented(age_s=-2)  # created 2 s "after" this engine's now
    d = decide_person_info(by_card(), card_load(challenge=ahead), NOW, LIMITS, REF)
    assert isinstance(d, PersonInfoDecision) and d.challenge_burn is not None
    assert d.challenge_burn.used_at == ahead.created_at


def test_by_card_decided_without_the_hsms_verdict_is_a_bug() -> None:
    with pytest.raises(DomainInvariantViolation):
        decide_person_info(by_card(), card_load(genuine=None), NOW, LIMITS, REF)


# -- 1101 by e-card -------------------------------------------------------------------------

TOKEN_ID = "EC0123456789ABCDEF"
IAT = int(NOW.timestamp()) - 10


def by_ecard(
    *,
    mdtrt_cert_no: str = TOKEN_ID,
    certno: str = "",
    token_name: str = HOLDER.psn_name,
    token_region: str = HOLDER.insuplc_admdvs,
    iat: int = IAT,
    exp: int = IAT + 60,
) -> PersonInfoRequest:
    claims = EcardClaims(
        token_id=TOKEN_ID,
        certno=HOLDER.certno,
        psn_name=token_name,
        insuplc_admdvs=token_region,
        iat=iat,
        exp=exp,
    )
    return PersonInfoRequest(
        credential=Credential.ecard,
        mdtrt_cert_no=mdtrt_cert_no,
        terminal_id=TERMINAL,
        fixmedins_code=INSTITUTION,
        certno=certno,
        ecard=claims,
    )


def ecard_load(
    *, person: Insured | None = HOLDER, genuine: bool | None = True, token_used: bool = False
) -> PersonInfoLoad:
    return PersonInfoLoad(person=person, genuine=genuine, token_used=token_used)


TOKEN_BURN = TokenBurn(
    TOKEN_ID, NOW, dt.datetime.fromtimestamp(IAT + 60 + 5, dt.UTC)
)  # exp + clock skew


def test_a_genuine_current_token_answers_its_person_and_burns_its_id() -> None:
    d = decide_person_info(by_ecard(), ecard_load(), NOW, LIMITS, REF)
    proof = IssuedProof(
        cred_ref=REF,
        credential=Credential.ecard,
        psn_no="P1",
        insuplc_admdvs="510100",
        terminal_id=TERMINAL,
        fixmedins_code=INSTITUTION,
        card_sn="",
        created_at=NOW,
        expires_at=NOW + dt.timedelta(seconds=600),
    )
    assert d == PersonInfoDecision(person=HOLDER, token_burn=TOKEN_BURN, proof=proof)


NOW_S = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("request_", "load", "reason", "message"),
    [
        (
            by_ecard(),
            ecard_load(genuine=False),
            Refusal.ecard_token_signature_invalid,
            "input.data.yk_ecard_qr: not signed by the e-card platform",
        ),
        (
            by_ecard(iat=NOW_S - 10, exp=NOW_S + 3600),
            ecard_load(),
            Refusal.ecard_token_malformed,
            "input.data.yk_ecard_qr: valid for more than 60 s",
        ),
        (
            by_ecard(iat=NOW_S + 6, exp=NOW_S + 66),
            ecard_load(),
            Refusal.ecard_token_expired,
            "input.data.yk_ecard_qr: not valid yet",
        ),
        (
            by_ecard(iat=NOW_S - 66, exp=NOW_S - 6),
            ecard_load(),
            Refusal.ecard_token_expired,
            "input.data.yk_ecard_qr: expired",
        ),
        (
            by_ecard(mdtrt_cert_no="EC9999999999999999"),
            ecard_load(),
            Refusal.ecard_token_id_mismatch,
            "input.data.mdtrt_cert_no: is not the id of the token in yk_ecard_qr",
        ),
        (
            by_ecard(),
            ecard_load(token_used=True),
            Refusal.ecard_token_already_used,
            "input.data.yk_ecard_qr: token already used",
        ),
    ],
)
def test_a_forged_stale_mismatched_or_used_token_burns_nothing(
    request_: PersonInfoRequest, load: PersonInfoLoad, reason: Refusal, message: str
) -> None:
    assert decide_person_info(request_, load, NOW, LIMITS, REF) == Refused(reason, message)


def test_the_clock_skew_allowed_is_inclusive_on_both_ends() -> None:
    for iat in (NOW_S + 5, NOW_S - 65):  # valid from now + skew, until exp + skew
        d = decide_person_info(by_ecard(iat=iat, exp=iat + 60), ecard_load(), NOW, LIMITS, REF)
        assert isinstance(d, PersonInfoDecision) and d.refusal is None, iat


def test_a_forged_token_is_a_forgery_before_it_is_stale() -> None:
    stale = by_ecard(iat=NOW_S - 600, exp=NOW_S - 540)
    d = decide_person_info(stale, ecard_load(genuine=False), NOW, LIMITS, REF)
    assert isinstance(d, Refused) and d.reason is Refusal.ecard_token_signature_invalid


@pytest.mark.parametrize(
    ("request_", "load", "reason", "message"),
    [
        (
            by_ecard(),
            ecard_load(person=None),
            Refusal.person_not_found,
            "input.data.yk_ecard_qr: no insured person found",
        ),
        (
            by_ecard(token_name="李娜"),
            ecard_load(),
            Refusal.card_person_mismatch,
            "input.data.yk_ecard_qr: name or insured region differs from the insured"
            " person's record",
        ),
        (
            by_ecard(token_region="320500"),
            ecard_load(),
            Refusal.card_person_mismatch,
            "input.data.yk_ecard_qr: name or insured region differs from the insured"
            " person's record",
        ),
        (
            by_ecard(certno="510104199001019999"),
            ecard_load(),
            Refusal.card_person_mismatch,
            "input.data.certno: is not the holder's of this e-card",
        ),
    ],
)
def test_a_genuine_token_whose_person_does_not_match_is_burned_and_refused(
    request_: PersonInfoRequest, load: PersonInfoLoad, reason: Refusal, message: str
) -> None:
    d = decide_person_info(request_, load, NOW, LIMITS, REF)
    assert d == PersonInfoDecision(token_burn=TOKEN_BURN, refusal=Refused(reason, message))


def test_by_ecard_decided_without_the_hsms_verdict_is_a_bug() -> None:
    with pytest.raises(DomainInvariantViolation):
        decide_person_info(by_ecard(), ecard_load(genuine=None), NOW, LIMITS, REF)
