"""The pharmacy decisions (settlement/pharmacy.py) without a database: a five-item basket
worked to the fen under the Chengdu employees' 2026 fixture, the refusals in their
documented order, and properties over random baskets — the §2.8 identities hold, the
account is never overdrawn, the fund never passes the annual outpatient limit."""

from __future__ import annotations

import datetime as dt

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.catalog import CatalogItem, FeeLine, ItemClass, line_amount_fen
from settlement.outpatient import AccumulatorsRow, Institution, Person
from settlement.pharmacy import PharmacyDecision, PharmacyLoad, PharmacyRequest, decide_pharmacy
from settlement.policy import Level, PolicyBook
from settlement.proofs import CardProof, Credential, Presented
from settlement.refusals import Refusal, Refused

BOOK = PolicyBook()
NOW = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
PHARMACY = Institution(
    fixmedins_code="P51010000001", level=Level("community"), inst_type="pharmacy"
)
TERMINAL = "T-P51010000001-01"
CATALOG = [
    CatalogItem("DJIA0001", "甲类药", ItemClass.jia, "101", None, 0),
    CatalogItem("DYI10001", "乙类药10%", ItemClass.yi, "101", None, 1000),
    CatalogItem("DBING001", "丙类药", ItemClass.bing, "101", None, 0),
    CatalogItem("DCEIL001", "限价甲类药", ItemClass.jia, "101", 8_000, 0),  # 80.00 a unit
]


def person(*, balance_fen: int = 100_000, insutype: str = "310", stas: str = "1") -> Person:
    return Person(
        psn_no="P1",
        insuplc_admdvs="510100",
        psn_cert_type="01",
        certno="510104199001011234",
        psn_name="王伟",
        gend="1",
        naty="01",
        brdy=dt.date(1990, 1, 1),
        insutype=insutype,
        retired=False,
        psn_insu_stas=stas,
        cvlserv_flag="0",
        acct_balance_fen=balance_fen,
    )


def line(sn: str, code: str, pric_fen: int, cnt: int = 1) -> FeeLine:
    pric_e6, cnt_e4 = pric_fen * 10_000, cnt * 10_000
    return FeeLine(sn, code, cnt_e4, pric_e6, line_amount_fen(cnt_e4, pric_e6))


# 甲 2 × 30.00, 乙10% 100.00, 丙 50.00, 甲 over its 80.00 ceiling at 100.00, and an item
# the catalog does not have at 15.00: 325.00 in all.
BASKET = [
    line("1", "DJIA0001", 3_000, 2),
    line("2", "DYI10001", 10_000),
    line("3", "DBING001", 5_000),
    line("4", "DCEIL001", 10_000),
    line("5", "DNOTLIST", 1_500),
]


def request(
    lines: list[FeeLine] = BASKET,
    *,
    total_fen: int = 32_500,
    acct_used: bool = True,
    presented: Presented | None = None,
) -> PharmacyRequest:
    return PharmacyRequest(
        psn_no="P1",
        insutype="310",
        insuplc_admdvs="510100",
        mdtrtarea_admvs="510100",
        medfee_sumamt_fen=total_fen,
        acct_used=acct_used,
        lines=lines,
        presented=presented,
    )


def load(
    *,
    who: Person | None = None,
    used_fen: int = 0,
    paid_fen: int = 0,
    proof: CardProof | None = None,
    settles: bool = True,
) -> PharmacyLoad:
    row = AccumulatorsRow(2026, used_fen, paid_fen, paid_fen) if used_fen or paid_fen else None
    return PharmacyLoad(
        person=person() if who is None else who,
        accumulators=row,
        catalog=CATALOG,
        proof=proof,
        visit_seq=7 if settles else None,
        setl_seq=9 if settles else None,
    )


def decided(req: PharmacyRequest, ld: PharmacyLoad) -> PharmacyDecision:
    got = decide_pharmacy(req, ld, BOOK, PHARMACY, NOW)
    assert not isinstance(got, Refused), got
    return got


def test_the_five_item_basket_to_the_fen() -> None:
    """Lines: 甲 60.00 in scope; 乙 10.00 first self-paid, 90.00 in scope; 丙 50.00 and the
    unlisted 15.00 wholly self-paid; the capped 甲 20.00 over its ceiling, 80.00 in scope.
    In scope 230.00: the year's first 200.00 is the employees' outpatient deductible, the
    pharmacy ratio pays 50 % of the other 30.00 = 15.00. The person pays 325.00 − 15.00 =
    310.00, all from the account (1 000.00; the Chengdu fixture lets it cover 丙 and
    over-ceiling parts): 690.00 left."""
    d = decided(request(), load())
    s = d.settle.split
    assert [x.inscp_scp_amt_fen for x in d.splits] == [6_000, 9_000, 0, 8_000, 0]
    assert [x.preselfpay_amt_fen for x in d.splits] == [0, 1_000, 0, 0, 0]
    assert [x.fulamt_ownpay_amt_fen for x in d.splits] == [0, 0, 5_000, 0, 1_500]
    assert [x.overlmt_amt_fen for x in d.splits] == [0, 0, 0, 2_000, 0]
    assert (s.medfee_sumamt_fen, s.fulamt_ownpay_amt_fen, s.overlmt_selfpay_fen) == (
        32_500,
        6_500,
        2_000,
    )
    assert (s.preselfpay_amt_fen, s.inscp_scp_amt_fen, s.act_pay_dedc_fen) == (
        1_000,
        23_000,
        20_000,
    )
    assert (s.hifp_pay_fen, s.fund_pay_sumamt_fen, s.psn_part_amt_fen) == (1_500, 1_500, 31_000)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (31_000, 0, 69_000)
    assert d.mdtrt_id == "51010020260601000000000007"
    assert d.settle.setl_id == "51010020260601000000000009"
    after = d.settle.accumulators_after
    assert (after.deductible_used_fen, after.outpatient_fund_paid_fen) == (20_000, 1_500)
    assert sum(p.amount_fen for p in d.settle.postings) == 0


def test_once_the_deductible_is_used_the_ratio_applies_to_all_in_scope() -> None:
    """230.00 × 50 % = 115.00 from the fund; 210.00 the person's: 100.00 from the
    account (all it has), 110.00 in cash."""
    d = decided(request(), load(who=person(balance_fen=10_000), used_fen=20_000))
    s = d.settle.split
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen, s.psn_part_amt_fen) == (0, 11_500, 21_000)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (10_000, 11_000, 0)


def test_without_the_account_the_person_pays_cash_and_a_resident_gets_no_pooling() -> None:
    d = decided(request(acct_used=False), load())
    assert (d.settle.split.acct_pay_fen, d.settle.split.psn_cash_pay_fen) == (0, 31_000)
    resident = PharmacyRequest(**{**msgspec.structs.asdict(request()), "insutype": "390"})
    d = decided(resident, load(who=person(insutype="390")))
    # Chengdu residents' fixture has no pharmacy ratio: nothing pooled, no account.
    s = d.settle.split
    assert (s.fund_pay_sumamt_fen, s.acct_pay_fen, s.psn_cash_pay_fen) == (0, 0, 32_500)


def test_a_pre_settlement_has_no_numbers_and_asks_no_proof() -> None:
    d = decided(request(), load(settles=False))
    assert d.mdtrt_id is None and d.settle.setl_id is None


def card_presented(cred_ref: str = "ab" * 16) -> Presented:
    return Presented(
        credential=Credential.card,
        cred_ref=cred_ref,
        psn_no="P1",
        terminal_id=TERMINAL,
        fixmedins_code=PHARMACY.fixmedins_code,
    )


def test_refusals_come_in_the_documented_order() -> None:
    wrong_amount = [*BASKET[:4], msgspec.structs.replace(BASKET[4], det_item_fee_sumamt_fen=1)]
    cases = [
        (request(wrong_amount), load(who=None), Refusal.fee_detail_amount_mismatch),
        (
            request(presented=card_presented("")),
            load(who=person(stas="4")),
            Refusal.person_not_insured,
        ),
        (request(presented=card_presented("")), load(), Refusal.card_proof_missing),
        (request(presented=card_presented()), load(), Refusal.card_proof_unknown),
        (request(total_fen=32_501), load(), Refusal.medfee_sumamt_mismatch),
    ]
    for req, ld, want in cases:
        got = decide_pharmacy(req, ld, BOOK, PHARMACY, NOW)
        assert isinstance(got, Refused) and got.reason is want, (want, got)
    nobody = PharmacyLoad(person=None, accumulators=None, catalog=CATALOG)
    got = decide_pharmacy(request(), nobody, BOOK, PHARMACY, NOW)
    assert isinstance(got, Refused) and got.reason is Refusal.person_not_found
    assert got.message == "input.druginfo.psn_no: P1 not found"
    got = decide_pharmacy(request(wrong_amount), load(), BOOK, PHARMACY, NOW)
    assert isinstance(got, Refused)
    assert got.message.startswith("input.drugdetail[4].det_item_fee_sumamt: 0.01 is not")


def test_a_fresh_card_proof_carries_the_purchase() -> None:
    proof = CardProof(
        cred_ref="ab" * 16,
        credential=Credential.card,
        psn_no="P1",
        terminal_id=TERMINAL,
        fixmedins_code=PHARMACY.fixmedins_code,
        expires_at=NOW + dt.timedelta(minutes=5),
        revoked=False,
    )
    decided(request(presented=card_presented()), load(proof=proof))


items = st.sampled_from([c.med_list_codg for c in CATALOG] + ["DNOTLIST"])
baskets = st.lists(
    st.tuples(items, st.integers(1, 50_000), st.integers(1, 5)), min_size=1, max_size=8
)


@settings(max_examples=200, deadline=None)
@given(
    basket=baskets,
    balance=st.integers(0, 200_000),
    used=st.integers(0, 20_000),
    paid=st.integers(0, 200_000),
)
def test_random_baskets_keep_the_identities_and_the_limits(
    basket: list[tuple[str, int, int]], balance: int, used: int, paid: int
) -> None:
    lines = [line(str(i), code, pric, cnt) for i, (code, pric, cnt) in enumerate(basket)]
    total = sum(x.det_item_fee_sumamt_fen for x in lines)
    d = decided(
        request(lines, total_fen=total),
        load(who=person(balance_fen=balance), used_fen=used, paid_fen=paid),
    )
    s = d.settle.split  # adjudicate checks every §2.8 identity before it returns
    assert 0 <= s.acct_pay_fen <= balance and s.balc_fen == balance - s.acct_pay_fen
    after = d.settle.accumulators_after
    assert after.outpatient_fund_paid_fen <= max(paid, 200_000)  # the 2 000.00 annual limit
    assert after.deductible_used_fen <= max(used, 20_000)
    assert sum(p.amount_fen for p in d.settle.postings) == 0
