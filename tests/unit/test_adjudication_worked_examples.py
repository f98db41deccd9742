"""Worked examples checked to the fen: the per-line split (DOMAIN.md §4.2), the
settlement calculation (§4.3-4.4) with the shipped Chengdu fixtures (§4.8), and the
§4.9 inpatient example."""

from __future__ import annotations

import decimal

import pytest

from settlement.adjudication import (
    Accumulators,
    Benefit,
    PersonFacts,
    adjudicate,
    reverse_accumulators,
)
from settlement.catalog import (
    CatalogItem,
    DetailSplit,
    FeeLine,
    ItemClass,
    line_amount_fen,
    split_line,
)
from settlement.money import MoneyError, fen_to_yuan, ratio_of, yuan_to_fen
from settlement.policy import Level, PolicyBook

BOOK = PolicyBook()
EMPLOYEES = BOOK.get("510100", "310", 2026)
RESIDENTS = BOOK.get("510100", "390", 2026)
FRESH = Accumulators(year=2026, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0)
JIA = CatalogItem("J", "甲", ItemClass.jia, "201", None, 0)
YI10 = CatalogItem("Y", "乙10%", ItemClass.yi, "101", None, 1000)
BING = CatalogItem("B", "丙", ItemClass.bing, "101", None, 0)
IMPLANT = CatalogItem("C", "限价植入物", ItemClass.jia, "301", 100_000, 0)


def line(sn: str, amount_fen: int, item: CatalogItem | None, cnt: int = 1) -> DetailSplit:
    unit_e6 = amount_fen * 10_000 // cnt
    return split_line(
        FeeLine(sn, item.med_list_codg if item else "?", cnt * 10_000, unit_e6, amount_fen), item
    )


def employee(balance_fen: int, *, retired: bool = False) -> PersonFacts:
    return PersonFacts(insutype="310", retired=retired, acct_balance_fen=balance_fen)


# --- money ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0", 0), ("0.01", 1), ("1.5", 150), ("1.50", 150), ("1E+2", 10000), ("12345.67", 1234567)],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(decimal.Decimal(text), "x") == fen
    assert fen_to_yuan(fen) == decimal.Decimal(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.005", "at most 2 decimal places"),
        ("-0.01", "must not be negative"),
        ("NaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ("1E+12", "must not exceed"),
    ],
)
def test_bad_amounts_name_the_field(text: str, reason: str) -> None:
    with pytest.raises(MoneyError) as info:
        yuan_to_fen(decimal.Decimal(text), "data.medfee_sumamt")
    assert info.value.field == "data.medfee_sumamt"
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("amount", "bp", "share"),
    [
        (5, 5000, 3),
        (3, 5000, 2),
        (1, 4999, 0),
        (1, 5000, 1),
        (100, 3333, 33),
        (10_000, 8500, 8500),
        (7, 0, 0),
    ],
)
def test_ratio_is_half_up_to_the_fen(amount: int, bp: int, share: int) -> None:
    assert ratio_of(amount, bp) == share


def test_line_amount_is_price_times_quantity_half_up() -> None:
    assert line_amount_fen(cnt_e4=15_000, pric_e6=3_333_333) == 500  # 1.5 × 3.333333 = 4.9999995
    assert line_amount_fen(cnt_e4=10_000, pric_e6=1_005_000) == 101  # 1.005 yuan -> 1.01


# --- the per-line split -------------------------------------------------------------------


def test_split_of_each_item_class() -> None:
    assert line("1", 20_000, JIA).inscp_scp_amt_fen == 20_000
    yi = line("2", 10_000, YI10)
    assert (yi.preselfpay_amt_fen, yi.inscp_scp_amt_fen, yi.selfpay_prop_bp) == (1_000, 9_000, 1000)
    bing = line("3", 5_000, BING)
    assert (bing.fulamt_ownpay_amt_fen, bing.inscp_scp_amt_fen) == (5_000, 0)
    unknown = line("4", 777, None)
    assert unknown.fulamt_ownpay_amt_fen == 777 and "目录外" in unknown.memo


def test_price_above_the_ceiling_is_self_paid_per_unit() -> None:
    over = line("5", 300_000, IMPLANT, cnt=2)  # 1500.00 each, ceiling 1000.00
    assert (over.overlmt_amt_fen, over.inscp_scp_amt_fen, over.pric_uplmt_amt_fen) == (
        100_000,
        200_000,
        200_000,
    )
    under = line("6", 180_000, IMPLANT, cnt=2)  # 900.00 each: nothing over
    assert (under.overlmt_amt_fen, under.inscp_scp_amt_fen) == (0, 180_000)


# --- settlements ----------------------------------------------------------------------------


def test_domain_4_9_inpatient_worked_example() -> None:
    """Employee, employed, level-3 admission of 20 000: 丙 1 000; 乙 8 000 at 10 %;
    an implant at 1 500 over its 1 000 ceiling; the rest 甲; account balance 2 000."""
    lines = [
        line("1", 100_000, BING),
        line("2", 800_000, YI10),
        line("3", 150_000, IMPLANT),
        line("4", 950_000, JIA),
    ]
    s = adjudicate(
        lines, employee(200_000), FRESH, EMPLOYEES, Level.level3, Benefit.inpatient, True
    )
    assert s.medfee_sumamt_fen == 2_000_000
    assert (s.fulamt_ownpay_amt_fen, s.overlmt_selfpay_fen, s.preselfpay_amt_fen) == (
        100_000,
        50_000,
        80_000,
    )
    assert s.inscp_scp_amt_fen == 1_770_000
    assert s.act_pay_dedc_fen == 80_000
    assert s.hifp_pay_fen == s.fund_pay_sumamt_fen == 1_436_500
    assert s.psn_part_amt_fen == 563_500
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (200_000, 363_500, 0)
    assert s.accumulators_after.fund_paid_fen == 1_436_500
    assert s.accumulators_after.deductible_used_fen == 0, "inpatient deductible is per admission"


def test_outpatient_first_visit_of_the_year_consumes_the_deductible() -> None:
    s = adjudicate(
        [line("1", 50_000, JIA)],
        employee(10_000),
        FRESH,
        EMPLOYEES,
        Level.level2,
        Benefit.outpatient,
        True,
    )
    # 500 in scope: 200 deductible, 60 % of 300 = 180 from the fund, 320 for the patient.
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen, s.psn_part_amt_fen) == (20_000, 18_000, 32_000)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen) == (10_000, 22_000)
    assert s.accumulators_after == Accumulators(
        year=2026, deductible_used_fen=20_000, outpatient_fund_paid_fen=18_000, fund_paid_fen=18_000
    )
    assert [r.fund_pay_type for r in s.setldetail] == ["310100", "310200"]
    assert s.setldetail[0].crt_payb_lmt_amt_fen == 200_000


def test_retired_employee_gets_the_retired_deductible_and_ratio() -> None:
    s = adjudicate(
        [line("1", 50_000, JIA)],
        employee(0, retired=True),
        FRESH,
        EMPLOYEES,
        Level.level1,
        Benefit.outpatient,
        True,
    )
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (15_000, 24_500)  # 70 % of 350


def test_visit_that_reaches_the_annual_outpatient_limit() -> None:
    acc = Accumulators(
        year=2026,
        deductible_used_fen=20_000,
        outpatient_fund_paid_fen=190_000,
        fund_paid_fen=190_000,
    )
    s = adjudicate(
        [line("1", 100_000, JIA)],
        employee(0),
        acc,
        EMPLOYEES,
        Level.level2,
        Benefit.outpatient,
        True,
    )
    assert s.hifp_pay_fen == 10_000, "only 100.00 of the 2 000.00 limit was left"
    assert s.psn_cash_pay_fen == 90_000
    assert s.accumulators_after.outpatient_fund_paid_fen == 200_000
    again = adjudicate(
        [line("1", 100_000, JIA)],
        employee(0),
        s.accumulators_after,
        EMPLOYEES,
        Level.level2,
        Benefit.outpatient,
        True,
    )
    assert again.hifp_pay_fen == 0


def test_level3_and_pharmacy_ratios() -> None:
    lv3 = adjudicate(
        [line("1", 120_000, JIA)],
        employee(0),
        FRESH,
        EMPLOYEES,
        Level.level3,
        Benefit.outpatient,
        True,
    )
    assert lv3.hifp_pay_fen == 50_000  # 50 % of (1200 - 200)
    shop = adjudicate(
        [line("1", 120_000, JIA)],
        employee(0),
        FRESH,
        EMPLOYEES,
        Level.community,
        Benefit.pharmacy,
        True,
    )
    assert shop.hifp_pay_fen == 50_000


def test_residents_have_pooling_only_at_community_level_and_no_account() -> None:
    resident = PersonFacts(insutype="390", retired=False, acct_balance_fen=0)
    here = adjudicate(
        [line("1", 10_000, JIA)],
        resident,
        FRESH,
        RESIDENTS,
        Level.community,
        Benefit.outpatient,
        True,
    )
    assert (here.act_pay_dedc_fen, here.hifp_pay_fen, here.acct_pay_fen) == (0, 6_000, 0)
    there = adjudicate(
        [line("1", 10_000, JIA)], resident, FRESH, RESIDENTS, Level.level3, Benefit.outpatient, True
    )
    assert (there.act_pay_dedc_fen, there.hifp_pay_fen, there.psn_cash_pay_fen) == (0, 0, 10_000)
    assert [r.fund_pay_type for r in there.setldetail] == ["390100"]


def test_account_not_used_when_the_his_says_so() -> None:
    s = adjudicate(
        [line("1", 50_000, JIA)],
        employee(99_999),
        FRESH,
        EMPLOYEES,
        Level.level2,
        Benefit.outpatient,
        False,
    )
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (0, 32_000, 99_999)


def test_cancellation_takes_the_settlement_back_out_of_the_accumulators() -> None:
    s = adjudicate(
        [line("1", 50_000, JIA)],
        employee(0),
        FRESH,
        EMPLOYEES,
        Level.level2,
        Benefit.outpatient,
        True,
    )
    assert reverse_accumulators(s.accumulators_after, s, Benefit.outpatient) == FRESH
