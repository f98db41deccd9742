"""Card proof bound to the money (settlement/proofs.py) without a database: which
credential may carry a 2201 or 2207, the order of the refusals, and that 2201 and 2207
ask the check at the documented place of their own refusal lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from settlement.catalog import DetailSplit, ItemClass
from settlement.lifecycle import VisitState
from settlement.outpatient import (
    Institution,
    Person,
    RegisterLoad,
    RegisterRequest,
    SettleLoad,
    SettleRequest,
    Visit,
    decide_register,
    decide_settle,
)
from settlement.policy import DEFAULT_POLICY_DIR, Level, PolicyBook
from settlement.proofs import CardProof, Credential, Presented, proof_refusal
from settlement.refusals import Refusal, Refused

NOW = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TERMINAL, INSTITUTION = "T-H51010000001-01", "H51010000001"
REF = "0123456789abcdef" * 2
BOOK = PolicyBook()


def presented(credential: Credential = Credential.card, cred_ref: str = REF) -> Presented:
    return Presented(
        credential=credential,
        cred_ref=cred_ref,
        psn_no="P1",
        terminal_id=TERMINAL,
        fixmedins_code=INSTITUTION,
    )


def proof(**changes: object) -> CardProof:
    base = CardProof(
        cred_ref=REF,
        credential=Credential.card,
        psn_no="P1",
        terminal_id=TERMINAL,
        fixmedins_code=INSTITUTION,
        expires_at=NOW + dt.timedelta(seconds=300),
        revoked=False,
    )
    return msgspec.structs.replace(base, **changes)


def refusal(got: Refused | None) -> Refusal | None:
    return None if got is None else got.reason


def test_a_fresh_proof_of_this_person_terminal_and_institution_carries_the_money() -> None:
    assert proof_refusal(presented(), proof(), NOW, id_number_allowed=False) is None
    ecard = presented(Credential.ecard)
    assert (
        proof_refusal(ecard, proof(credential=Credential.ecard), NOW, id_number_allowed=False)
        is None
    )


@pytest.mark.parametrize(
    ("sent", "found", "want"),
    [
        (presented(cred_ref=""), proof(), Refusal.card_proof_missing),
        (presented(), None, Refusal.card_proof_unknown),  # forged, or purged
        (presented(Credential.ecard), proof(), Refusal.card_proof_unknown),  # a card's
        (presented(), proof(terminal_id="T-H51010000001-02"), Refusal.card_proof_other_terminal),
        (presented(), proof(fixmedins_code="H51010000002"), Refusal.card_proof_other_terminal),
        (presented(), proof(psn_no="P2"), Refusal.card_proof_other_person),
        (presented(), proof(revoked=True), Refusal.card_proof_revoked),
        (presented(), proof(expires_at=NOW), Refusal.card_proof_expired),  # at the second
        # Several faults: the first in the documented order answers.
        (presented(), proof(psn_no="P2", revoked=True), Refusal.card_proof_other_person),
        (presented(), proof(revoked=True, expires_at=NOW), Refusal.card_proof_revoked),
        (
            presented(),
            proof(terminal_id="T-X", psn_no="P2", expires_at=NOW),
            Refusal.card_proof_other_terminal,
        ),
    ],
)
def test_refusals_come_in_the_documented_order(
    sent: Presented, found: CardProof | None, want: Refusal
) -> None:
    got = proof_refusal(sent, found, NOW, id_number_allowed=True)
    assert refusal(got) is want
    assert got is not None and got.message.startswith("input.data.yk_cred_ref: ")


def test_an_id_number_carries_the_money_only_where_the_policy_allows_it() -> None:
    by_id = presented(Credential.certno, cred_ref="")
    assert proof_refusal(by_id, None, NOW, id_number_allowed=True) is None
    got = proof_refusal(by_id, None, NOW, id_number_allowed=False)
    assert refusal(got) is Refusal.cert_type_not_supported
    assert got is not None and got.message.startswith("input.data.mdtrt_cert_type: ")
    stray = proof_refusal(presented(Credential.certno), None, NOW, id_number_allowed=True)
    assert stray == Refused(
        Refusal.field_invalid, "input.data.yk_cred_ref: only with mdtrt_cert_type 01 or 03"
    )


# -- 2201 and 2207 ask it ---------------------------------------------------------------------


def person() -> Person:
    return Person(
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
        cvlserv_flag="0",
        acct_balance_fen=100_000,
    )


def register(sent: Presented) -> RegisterRequest:
    return RegisterRequest(
        psn_no="P1",
        insutype="310",
        insuplc_admdvs="510100",
        mdtrtarea_admvs="510100",
        ipt_otp_no="MZ1",
        presented=sent,
    )


def strict_book(tmp_path: Path) -> PolicyBook:
    """The packaged policies with settlement by ID number switched off."""
    for entry in DEFAULT_POLICY_DIR.iterdir():
        if entry.name.endswith(".toml"):
            text = entry.read_text(encoding="utf-8")
            off = text.replace("settle_by_id_number = true", "settle_by_id_number = false")
            assert off != text
            (tmp_path / entry.name).write_text(off, encoding="utf-8")
    return PolicyBook(tmp_path)


def test_2201_checks_the_credential_after_the_person_and_before_the_visit_number(
    tmp_path: Path,
) -> None:
    taken = RegisterLoad(person(), number_taken=True, visit_seq=7, proof=proof(psn_no="P2"))
    got = decide_register(register(presented()), taken, BOOK, NOW)
    assert refusal(got if isinstance(got, Refused) else None) is Refusal.card_proof_other_person
    nobody = RegisterLoad(None, number_taken=False, visit_seq=7, proof=None)
    got = decide_register(register(presented()), nobody, BOOK, NOW)
    assert isinstance(got, Refused) and got.reason is Refusal.person_not_found
    fine = RegisterLoad(person(), number_taken=False, visit_seq=7, proof=proof())
    assert not isinstance(decide_register(register(presented()), fine, BOOK, NOW), Refused)
    by_id = register(presented(Credential.certno, cred_ref=""))
    assert not isinstance(decide_register(by_id, fine, BOOK, NOW), Refused)
    got = decide_register(by_id, fine, strict_book(tmp_path), NOW)
    assert isinstance(got, Refused) and got.reason is Refusal.cert_type_not_supported


def settle(sent: Presented | None) -> SettleRequest:
    return SettleRequest(
        mdtrt_id="V1",
        psn_no="P1",
        insutype="310",
        insuplc_admdvs="510100",
        mdtrtarea_admvs="510100",
        med_type="11",
        medfee_sumamt_fen=10_000,
        acct_used=True,
        presented=sent,
    )


def settle_load(found: CardProof | None, *, settled: str | None = None) -> SettleLoad:
    detail = DetailSplit(
        feedetl_sn="0001",
        det_item_fee_sumamt_fen=10_000,
        fulamt_ownpay_amt_fen=0,
        overlmt_amt_fen=0,
        preselfpay_amt_fen=0,
        inscp_scp_amt_fen=10_000,
        pric_uplmt_amt_fen=0,
        selfpay_prop_bp=0,
        chrgitm_lv=ItemClass.jia,
        memo="",
    )
    visit = Visit("V1", "P1", INSTITUTION, "310", "03", VisitState.registered)
    return SettleLoad(
        visit=visit,
        person=person(),
        accumulators=None,
        live_setl_id=settled,
        details=[detail],
        setl_seq=1,
        proof=found,
    )


def test_2207_checks_the_credential_before_anything_about_the_money() -> None:
    hospital = Institution(fixmedins_code=INSTITUTION, level=Level("3"), inst_type="hospital")
    stale = settle_load(proof(expires_at=NOW - dt.timedelta(seconds=1)), settled="S1")
    got = decide_settle(settle(presented()), stale, BOOK, hospital, NOW)
    assert isinstance(got, Refused) and got.reason is Refusal.card_proof_expired
    got = decide_settle(settle(presented()), settle_load(proof()), BOOK, hospital, NOW)
    assert not isinstance(got, Refused)
    # 2206 shows the split and moves nothing: no credential is asked for.
    got = decide_settle(settle(None), settle_load(None), BOOK, hospital, NOW)
    assert not isinstance(got, Refused)
