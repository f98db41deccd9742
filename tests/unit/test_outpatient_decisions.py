"""The outpatient decide functions without a database: what the load would have found
goes in as Structs, and out comes a refusal in the documented order or a decision whose
postings, accumulators and answer amounts are exact to the fen. Properties over random
details and balances: the entry always balances, the account is never overdrawn, the
fund never passes what the policy leaves of the annual cap."""

from __future__ import annotations

import datetime as dt

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.catalog import CatalogItem, DetailSplit, FeeLine, ItemClass, split_line
from settlement.lifecycle import SettlementState, VisitState
from settlement.outpatient import (
    AccumulatorsRow,
    FeesLoad,
    FeesRequest,
    Institution,
    Person,
    RegisterLoad,
    RegisterRequest,
    SettleDecision,
    SettleLoad,
    SettleRequest,
    Visit,
    decide_fees,
    decide_register,
    decide_settle,
)
from settlement.policy import Level, PolicyBook
from settlement.proofs import Credential, Presented
from settlement.refusals import Refusal, Refused

BOOK = PolicyBook()
NOW = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
HOSPITAL = Institution(fixmedins_code="H51010000001", level=Level("3"), inst_type="hospital")
BY_ID_NUMBER = Presented(
    credential=Credential.certno,
    cred_ref="",
    psn_no="P1",
    terminal_id="T-H51010000001-01",
    fixmedins_code="H51010000001",
)
JIA = CatalogItem("J", "甲", ItemClass.jia, "201", None, 0)
YI10 = CatalogItem("Y", "乙10%", ItemClass.yi, "101", None, 1000)


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


def visit(*, state: VisitState = VisitState.registered, psn_no: str = "P1") -> Visit:
    return Visit("V1", psn_no, HOSPITAL.fixmedins_code, "310", "02", state)


def detail(sn: str, unit_fen: int, item: CatalogItem = JIA, qty: int = 1) -> DetailSplit:
    fee = FeeLine(sn, item.med_list_codg, qty * 10_000, unit_fen * 10_000, unit_fen * qty)
    return split_line(fee, item)


def settle_request(total_fen: int, **kw: object) -> SettleRequest:
    base: dict[str, object] = {
        "mdtrt_id": "V1",
        "psn_no": "P1",
        "insutype": "310",
        "insuplc_admdvs": "510100",
        "mdtrtarea_admvs": "510100",
        "med_type": "11",
        "medfee_sumamt_fen": total_fen,
        "acct_used": True,
    }
    base.update(kw)
    return SettleRequest(**base)  # type: ignore[arg-type]


def settle_load(details: list[DetailSplit], **kw: object) -> SettleLoad:
    base: dict[str, object] = {
        "visit": visit(),
        "person": person(),
        "accumulators": None,
        "live_setl_id": None,
        "details": details,
        "setl_seq": 42,
    }
    base.update(kw)
    return SettleLoad(**base)  # type: ignore[arg-type]


def reason(got: object) -> Refusal:
    assert isinstance(got, Refused), got
    return got.reason


# -- 2201 ---------------------------------------------------------------------------------


def test_register_refusals_come_in_order_and_success_numbers_the_visit() -> None:
    req = RegisterRequest(
        psn_no="P1", insutype="310", insuplc_admdvs="510100", mdtrtarea_admvs="510100",
        ipt_otp_no="MZ1", presented=BY_ID_NUMBER,
    )  # fmt: skip
    ok = RegisterLoad(person(), number_taken=False, visit_seq=7)
    cases = [
        (RegisterLoad(None, True, 7), Refusal.person_not_found),
        (RegisterLoad(person(insutype="390"), True, 7), Refusal.insutype_not_held),
        (RegisterLoad(person(stas="0"), True, 7), Refusal.person_not_insured),
        (RegisterLoad(person(), True, 7), Refusal.visit_outpatient_number_duplicate),
    ]
    for load, want in cases:
        assert reason(decide_register(req, load, BOOK, NOW)) is want
    other_region = RegisterRequest(
        psn_no="P1", insutype="310", insuplc_admdvs="510700", mdtrtarea_admvs="510100",
        ipt_otp_no="MZ1", presented=BY_ID_NUMBER,
    )  # fmt: skip
    assert reason(decide_register(other_region, ok, BOOK, NOW)) is Refusal.person_region_mismatch
    got = decide_register(req, ok, BOOK, NOW)
    assert not isinstance(got, Refused)
    assert got.mdtrt_id == "51010020260601000000000007"
    assert got.state is VisitState.registered


# -- 2204 ---------------------------------------------------------------------------------


def test_fees_refuse_a_wrong_amount_before_looking_at_the_visit() -> None:
    wrong = FeeLine("0001", "J", 20_000, 1_000_000, 201)  # 2 × 1.00 yuan is 200 fen
    req = FeesRequest("V1", "P1", [wrong])
    load = FeesLoad(None, [], [JIA])
    assert reason(decide_fees(req, load, HOSPITAL.fixmedins_code)) is (
        Refusal.fee_detail_amount_mismatch
    )


def test_fees_refusals_for_the_visit_then_duplicates_then_the_split() -> None:
    line = FeeLine("0001", "Y", 10_000, 10_000 * 10_000, 10_000)  # 1 × 100.00 yuan, 乙 10 %
    req = FeesRequest("V1", "P1", [line])
    code = HOSPITAL.fixmedins_code
    assert reason(decide_fees(req, FeesLoad(None, [], [YI10]), code)) is Refusal.visit_not_found
    other = FeesLoad(visit(psn_no="P2"), [], [YI10])
    assert reason(decide_fees(req, other, code)) is Refusal.visit_person_mismatch
    cancelled = FeesLoad(visit(state=VisitState.cancelled), [], [YI10])
    assert reason(decide_fees(req, cancelled, code)) is Refusal.visit_cancelled
    taken = FeesLoad(visit(), ["0001"], [YI10])
    assert reason(decide_fees(req, taken, code)) is Refusal.fee_detail_duplicate
    got = decide_fees(req, FeesLoad(visit(), [], [YI10]), code)
    assert not isinstance(got, Refused)
    (s,) = got.splits
    # 10 % of 100.00 paid first by the patient, the rest in scope.
    assert (s.preselfpay_amt_fen, s.inscp_scp_amt_fen, s.fulamt_ownpay_amt_fen) == (1000, 9000, 0)
    not_listed = decide_fees(req, FeesLoad(visit(), [], []), code)
    assert not isinstance(not_listed, Refused)
    assert not_listed.splits[0].fulamt_ownpay_amt_fen == 10_000  # not in the catalog


# -- 2206 / 2207 --------------------------------------------------------------------------


def test_settle_refusals_in_their_order() -> None:
    details = [detail("0001", 50_000)]
    req = settle_request(50_000)
    cases: list[tuple[SettleRequest, SettleLoad, Refusal]] = [
        (req, settle_load(details, visit=None), Refusal.visit_not_found),
        (req, settle_load(details, visit=visit(psn_no="P2")), Refusal.visit_person_mismatch),
        (
            req,
            settle_load(details, visit=visit(state=VisitState.cancelled)),
            Refusal.visit_cancelled,
        ),
        (req, settle_load(details, person=None), Refusal.person_not_found),
        (
            settle_request(50_000, insuplc_admdvs="510700"),
            settle_load(details),
            Refusal.person_region_mismatch,
        ),
        (settle_request(50_000, insutype="390"), settle_load(details), Refusal.insutype_not_held),
        (req, settle_load(details, live_setl_id="S1"), Refusal.visit_already_settled),
        (req, settle_load([]), Refusal.fee_details_none_unsettled),
        (settle_request(50_001), settle_load(details), Refusal.medfee_sumamt_mismatch),
        (
            settle_request(50_000, his_totals_fen={"inscp_scp_amt": 1}),
            settle_load(details),
            Refusal.medfee_sumamt_mismatch,
        ),
    ]
    for r, load, want in cases:
        assert reason(decide_settle(r, load, BOOK, HOSPITAL, NOW)) is want, want
    no_policy = NOW.replace(year=2031)
    assert reason(decide_settle(req, settle_load(details), BOOK, HOSPITAL, no_policy)) is (
        Refusal.policy_not_found
    )


def test_settle_worked_example_to_the_fen() -> None:
    """500.00 yuan of 甲 at a level-3 hospital, Chengdu employees 2026 (fixture policy),
    an employed person with 1 000.00 on the account and nothing used this year:
    deductible 200.00; fund 50 % of the remaining 300.00 = 150.00; the patient's 350.00
    all from the account, which keeps 650.00."""
    got = decide_settle(
        settle_request(50_000), settle_load([detail("0001", 50_000)]), BOOK, HOSPITAL, NOW
    )
    assert isinstance(got, SettleDecision)
    s = got.split
    assert (s.inscp_scp_amt_fen, s.act_pay_dedc_fen, s.hifp_pay_fen) == (50_000, 20_000, 15_000)
    assert (s.fund_pay_sumamt_fen, s.psn_part_amt_fen) == (15_000, 35_000)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (35_000, 0, 65_000)
    assert got.setl_id == "51010020260601000000000042"
    assert got.state is SettlementState.settled
    assert sum(p.amount_fen for p in got.postings) == 0
    after = got.accumulators_after
    assert (after.deductible_used_fen, after.outpatient_fund_paid_fen, after.fund_paid_fen) == (
        20_000,
        15_000,
        15_000,
    )
    assert got.feedetl_sns == ["0001"]
    assert (got.open_limits.deductible_fen, got.open_limits.outpatient_limit_fen) == (
        20_000,
        200_000,
    )


def test_presettle_has_no_settlement_number() -> None:
    got = decide_settle(
        settle_request(50_000),
        settle_load([detail("0001", 50_000)], setl_seq=None),
        BOOK,
        HOSPITAL,
        NOW,
    )
    assert isinstance(got, SettleDecision) and got.setl_id is None


@settings(max_examples=200, deadline=None)
@given(
    units=st.lists(st.integers(1, 500_000), min_size=1, max_size=8),
    balance=st.integers(0, 2_000_000),
    fund_used=st.integers(0, 2_000_000),
    acct_used=st.booleans(),
)
def test_entry_balances_account_never_overdrawn_fund_within_the_cap(
    units: list[int], balance: int, fund_used: int, acct_used: bool
) -> None:
    policy = BOOK.get("510100", "310", 2026)
    cap = policy.fund_annual_cap_fen
    used = min(fund_used, cap)
    details = [detail(f"{i:04d}", u) for i, u in enumerate(units)]
    total = sum(units)
    load = settle_load(
        details,
        person=person(balance_fen=balance),
        accumulators=AccumulatorsRow(2026, 0, 0, used),
    )
    got = decide_settle(settle_request(total, acct_used=acct_used), load, BOOK, HOSPITAL, NOW)
    assert isinstance(got, SettleDecision)
    s = got.split
    assert sum(p.amount_fen for p in got.postings) == 0
    assert 0 <= s.acct_pay_fen <= balance
    assert acct_used or s.acct_pay_fen == 0
    assert s.balc_fen == balance - s.acct_pay_fen
    assert got.accumulators_after.fund_paid_fen <= cap
    assert got.accumulators_after.fund_paid_fen - used == s.fund_pay_sumamt_fen
    assert s.fund_pay_sumamt_fen + s.psn_part_amt_fen + s.hosp_part_amt_fen == total


# -- 2203 / 2205 / 2202 -------------------------------------------------------------------


def test_visit_changes_refuse_in_order_and_unregister_moves_the_visit_to_cancelled() -> None:
    from settlement.outpatient import (
        VisitLoad,
        VisitRequest,
        decide_fees_cancel,
        decide_unregister,
        decide_visit_info,
    )

    code = HOSPITAL.fixmedins_code
    open_visit = Visit("V1", "P1", code, "310", "02", VisitState.registered, "MZ1")
    req = VisitRequest(mdtrt_id="V1", psn_no="P1", chrg_bchno="B1", ipt_otp_no="MZ1")
    for decide in (decide_visit_info, decide_fees_cancel, decide_unregister):
        assert reason(decide(req, VisitLoad(None, None, 1), code)) is Refusal.visit_not_found
        cancelled = msgspec.structs.replace(open_visit, state=VisitState.cancelled)
        assert reason(decide(req, VisitLoad(cancelled, None, 1), code)) is Refusal.visit_cancelled
    assert reason(decide_fees_cancel(req, VisitLoad(open_visit, None, 0), code)) is (
        Refusal.fee_details_batch_not_found
    )
    wrong_number = VisitRequest(mdtrt_id="V1", psn_no="P1", ipt_otp_no="MZ9")
    assert reason(decide_unregister(wrong_number, VisitLoad(open_visit, None, 0), code)) is (
        Refusal.field_invalid
    )
    assert reason(decide_unregister(req, VisitLoad(open_visit, "S1", 0), code)) is (
        Refusal.visit_has_settlement
    )
    done = decide_unregister(req, VisitLoad(open_visit, None, 0), code)
    assert not isinstance(done, Refused) and done.state is VisitState.cancelled
    kept = decide_visit_info(req, VisitLoad(open_visit, None, 0), code)
    assert not isinstance(kept, Refused) and kept.state is VisitState.registered
