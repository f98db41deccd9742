"""Worked examples checked to the fen: the per-line split (DOMAIN.md §4.2), the
settlement calculation (§4.3-4.4) with the shipped Chengdu fixtures (§4.8, which are
unverified [U] figures, not law), the §4.9 inpatient example, cancellation, the
identity checks, and the policy book's refusal of bad files."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import pytest
from msgspec.structs import replace

from settlement.adjudication import (
    Accumulators,
    Benefit,
    PersonFacts,
    SettlementSplit,
    adjudicate,
    check_identities,
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
from settlement.errors import DomainInvariantViolation
from settlement.policy import Level, PolicyBook, PolicyFileError, PolicyNotFound, PolicyParams

BOOK = PolicyBook()
EMPLOYEES = BOOK.get("510100", "310", 2026)
RESIDENTS = BOOK.get("510100", "390", 2026)
FRESH = Accumulators(year=2026, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0)
JIA = CatalogItem("J", "甲", ItemClass.jia, "201", None, 0)
YI10 = CatalogItem("Y", "乙10%", ItemClass.yi, "101", None, 1000)
BING = CatalogItem("B", "丙", ItemClass.bing, "101", None, 0)
IMPLANT = CatalogItem("C", "限价植入物", ItemClass.jia, "301", 100_000, 0)  # ceiling 1000.00


def fee(sn: str, unit_fen: int, item: CatalogItem | None, qty: int = 1) -> FeeLine:
    """A consistent fee line: `qty` units at `unit_fen` each."""
    cnt_e4, pric_e6 = qty * 10_000, unit_fen * 10_000
    codg = item.med_list_codg if item else "UNMAPPED"
    return FeeLine(sn, codg, cnt_e4, pric_e6, line_amount_fen(cnt_e4, pric_e6))


def line(sn: str, unit_fen: int, item: CatalogItem | None, qty: int = 1) -> DetailSplit:
    return split_line(fee(sn, unit_fen, item, qty), item)


def employee(balance_fen: int = 0, *, retired: bool = False) -> PersonFacts:
    return PersonFacts(insutype="310", retired=retired, acct_balance_fen=balance_fen)


RESIDENT = PersonFacts(insutype="390", retired=False, acct_balance_fen=0)


def acc(deductible: int = 0, outpatient: int = 0, fund: int | None = None) -> Accumulators:
    fund_paid = outpatient if fund is None else fund
    return Accumulators(
        year=2026,
        deductible_used_fen=deductible,
        outpatient_fund_paid_fen=outpatient,
        fund_paid_fen=fund_paid,
    )


def settle(
    lines: list[DetailSplit],
    person: PersonFacts,
    *,
    level: Level = Level.level2,
    benefit: Benefit = Benefit.outpatient,
    before: Accumulators = FRESH,
    policy: PolicyParams | None = None,
    acct_used: bool = True,
) -> SettlementSplit:
    if policy is None:
        policy = EMPLOYEES if person.insutype == "310" else RESIDENTS
    return adjudicate(lines, person, before, policy, level, benefit, acct_used)


# --- the per-line split -----------------------------------------------------------------


def test_line_amount_is_price_times_quantity_half_up() -> None:
    assert line_amount_fen(cnt_e4=15_000, pric_e6=3_333_333) == 500  # 1.5 × 3.333333 yuan
    assert line_amount_fen(cnt_e4=10_000, pric_e6=1_005_000) == 101  # 1.005 yuan -> 1.01
    assert line_amount_fen(cnt_e4=10_000, pric_e6=1_004_999) == 100


def test_split_of_each_item_class() -> None:
    """甲 all in scope; 乙 pays its share first; 丙 and unmapped items fully self-paid."""
    assert line("1", 20_000, JIA).inscp_scp_amt_fen == 20_000
    yi = line("2", 10_000, YI10)
    assert (yi.preselfpay_amt_fen, yi.inscp_scp_amt_fen, yi.selfpay_prop_bp) == (1_000, 9_000, 1000)
    bing = line("3", 5_000, BING)
    assert (bing.fulamt_ownpay_amt_fen, bing.inscp_scp_amt_fen, bing.memo) == (
        5_000,
        0,
        "丙类, 全自费",
    )
    unknown = line("4", 777, None)
    assert (unknown.fulamt_ownpay_amt_fen, unknown.chrgitm_lv) == (777, ItemClass.bing)
    assert "目录外" in unknown.memo


def test_pay_first_share_is_half_up_and_ignored_for_jia() -> None:
    """5 fen at 50 % pay-first: 3 fen first (half-up), 2 in scope; a 甲 item's stray
    ratio is not applied and is reported as 0."""
    yi = CatalogItem("Y", "y", ItemClass.yi, "101", None, 5000)
    s = split_line(fee("1", 5, yi), yi)
    assert (s.preselfpay_amt_fen, s.inscp_scp_amt_fen) == (3, 2)
    jia = CatalogItem("J", "j", ItemClass.jia, "201", None, 3000)
    s = split_line(fee("2", 1000, jia), jia)
    assert (s.preselfpay_amt_fen, s.inscp_scp_amt_fen, s.selfpay_prop_bp) == (0, 1000, 0)


def test_price_above_the_ceiling_is_self_paid_per_unit() -> None:
    over = line("5", 150_000, IMPLANT, qty=2)  # 1500.00 each, ceiling 1000.00
    assert (over.overlmt_amt_fen, over.inscp_scp_amt_fen, over.pric_uplmt_amt_fen) == (
        100_000,
        200_000,
        200_000,
    )
    assert over.memo == "超限价部分自费"
    at = line("6", 100_000, IMPLANT, qty=2)  # exactly the ceiling: nothing over
    assert (at.overlmt_amt_fen, at.inscp_scp_amt_fen, at.pric_uplmt_amt_fen) == (
        0,
        200_000,
        200_000,
    )
    under = line("7", 90_000, IMPLANT, qty=2)
    assert (under.overlmt_amt_fen, under.inscp_scp_amt_fen) == (0, 180_000)


def test_yi_above_its_ceiling_pays_first_only_on_the_ceiling_part() -> None:
    """乙 item at 150.00 with a 100.00 ceiling and 20 % pay-first: 50 over, 20 first, 80 in."""
    item = CatalogItem("Y", "y", ItemClass.yi, "301", 10_000, 2000)
    s = line("1", 15_000, item)
    assert (s.overlmt_amt_fen, s.preselfpay_amt_fen, s.inscp_scp_amt_fen) == (5_000, 2_000, 8_000)


def test_in_scope_base_is_clamped_to_the_billed_amount() -> None:
    """A line billed below ceiling × quantity (inconsistent, but the split must still
    add up) keeps everything it billed in scope and nothing negative."""
    s = split_line(FeeLine("1", "C", 10_000, 150_000 * 10_000, 90_000), IMPLANT)
    assert (s.overlmt_amt_fen, s.inscp_scp_amt_fen) == (0, 90_000)


def test_negative_quantity_is_a_programmer_error() -> None:
    """The edge refuses negative cnt/pric; reaching the split with one is a bug."""
    with pytest.raises(DomainInvariantViolation):
        split_line(FeeLine("1", "J", -10_000, 1_000_000, 100), JIA)


# --- settlements -------------------------------------------------------------------------


def test_domain_4_9_inpatient_worked_example() -> None:
    """Employee, employed, level-3 admission of 20 000: 丙 1 000; 乙 8 000 at 10 %;
    an implant at 1 500 over its 1 000 ceiling; the rest 甲; account balance 2 000."""
    lines = [
        line("1", 100_000, BING),
        line("2", 800_000, YI10),
        line("3", 150_000, IMPLANT),
        line("4", 950_000, JIA),
    ]
    s = settle(lines, employee(200_000), level=Level.level3, benefit=Benefit.inpatient)
    assert s.medfee_sumamt_fen == 2_000_000
    assert (s.fulamt_ownpay_amt_fen, s.overlmt_selfpay_fen, s.preselfpay_amt_fen) == (
        100_000,
        50_000,
        80_000,
    )
    assert (s.inscp_scp_amt_fen, s.act_pay_dedc_fen) == (1_770_000, 80_000)
    assert s.hifp_pay_fen == s.fund_pay_sumamt_fen == 1_436_500
    assert s.psn_part_amt_fen == 563_500
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (200_000, 363_500, 0)
    assert s.accumulators_after == acc(fund=1_436_500), "inpatient leaves outpatient counters"
    assert s.setldetail[0].crt_payb_lmt_amt_fen == 45_000_000


def test_outpatient_first_visit_of_the_year_consumes_the_deductible() -> None:
    """500 in scope at level 2: 200 deductible, 60 % of 300 = 180 from the fund;
    the account (100) pays what it can of the 320 left, cash the rest."""
    s = settle([line("1", 50_000, JIA)], employee(10_000))
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen, s.psn_part_amt_fen) == (20_000, 18_000, 32_000)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (10_000, 22_000, 0)
    assert s.accumulators_after == acc(20_000, 18_000)
    assert [r.fund_pay_type for r in s.setldetail] == ["310100", "310200"]
    pooled, account = s.setldetail
    assert (pooled.crt_payb_lmt_amt_fen, pooled.fund_payamt_fen) == (200_000, 18_000)
    assert "起付线 200.00 已付 0.00 本次 200.00" in pooled.setl_proc_info
    assert "支付比例 60.00%" in pooled.setl_proc_info
    assert (account.fund_payamt_fen, account.crt_payb_lmt_amt_fen) == (10_000, 10_000)


def test_deductible_partly_used_by_an_earlier_visit() -> None:
    """150 of the 200 already used: this visit consumes 50, the fund pays 60 % of 50."""
    s = settle([line("1", 10_000, JIA)], employee(), before=acc(deductible=15_000))
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (5_000, 3_000)
    assert s.accumulators_after.deductible_used_fen == 20_000


def test_bill_below_the_remaining_deductible_pays_no_fund() -> None:
    s = settle([line("1", 8_000, JIA)], employee())
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen, s.psn_cash_pay_fen) == (8_000, 0, 8_000)
    assert s.accumulators_after == acc(deductible=8_000)


def test_visit_that_reaches_the_annual_outpatient_limit() -> None:
    """Only 100.00 of the 2 000.00 limit is left: the fund pays 100, then nothing."""
    s = settle([line("1", 100_000, JIA)], employee(), before=acc(20_000, 190_000))
    assert (s.hifp_pay_fen, s.psn_cash_pay_fen) == (10_000, 90_000)
    assert s.setldetail[0].crt_payb_lmt_amt_fen == 10_000
    assert s.accumulators_after.outpatient_fund_paid_fen == 200_000
    again = settle([line("1", 100_000, JIA)], employee(), before=s.accumulators_after)
    assert (again.hifp_pay_fen, again.setldetail[0].crt_payb_lmt_amt_fen) == (0, 0)


def test_retired_employee_gets_the_retired_deductible_ratio_and_limit() -> None:
    s = settle([line("1", 50_000, JIA)], employee(retired=True), level=Level.level1)
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (15_000, 24_500)  # 70 % of 350
    near = settle([line("1", 50_000, JIA)], employee(retired=True), before=acc(15_000, 240_000))
    assert near.hifp_pay_fen == 10_000, "retired limit is 2 500.00, 100.00 left"


def test_level3_and_pharmacy_ratios() -> None:
    """Level 3 and pharmacies pay 50 % (retired 60 %); a pharmacy ignores the level."""
    lv3 = settle([line("1", 120_000, JIA)], employee(), level=Level.level3)
    assert lv3.hifp_pay_fen == 50_000  # 50 % of (1200 - 200)
    for level in (Level.community, Level.level3):
        shop = settle([line("1", 120_000, JIA)], employee(), level=level, benefit=Benefit.pharmacy)
        assert shop.hifp_pay_fen == 50_000
        assert shop.setldetail[0].setl_proc_info.startswith("药店购药统筹")
    retired = settle([line("1", 120_000, JIA)], employee(retired=True), benefit=Benefit.pharmacy)
    assert (retired.act_pay_dedc_fen, retired.hifp_pay_fen) == (15_000, 63_000)  # 60 % of 1050


def test_residents_have_pooling_only_at_community_level_and_no_account() -> None:
    here = settle([line("1", 10_000, JIA)], RESIDENT, level=Level.community)
    assert (here.act_pay_dedc_fen, here.hifp_pay_fen, here.acct_pay_fen) == (0, 6_000, 0)
    there = settle([line("1", 10_000, JIA)], RESIDENT, level=Level.level3)
    assert (there.act_pay_dedc_fen, there.hifp_pay_fen, there.psn_cash_pay_fen) == (0, 0, 10_000)
    assert [r.fund_pay_type for r in there.setldetail] == ["390100"]
    assert "本级别不予统筹支付" in there.setldetail[0].setl_proc_info
    assert there.accumulators_after == FRESH


def test_resident_outpatient_limit_of_200() -> None:
    s = settle([line("1", 10_000, JIA)], RESIDENT, level=Level.community, before=acc(0, 19_000))
    assert s.hifp_pay_fen == 1_000


def test_a_scheme_without_accounts_never_pays_from_one() -> None:
    """Even with a balance on file and acct_used_flag=1, residents pay cash."""
    rich = PersonFacts(insutype="390", retired=False, acct_balance_fen=99_999)
    s = settle([line("1", 10_000, JIA)], rich, level=Level.community)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (0, 4_000, 99_999)


def test_account_not_used_when_the_his_says_so() -> None:
    s = settle([line("1", 50_000, JIA)], employee(99_999), acct_used=False)
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (0, 32_000, 99_999)
    assert [r.fund_pay_type for r in s.setldetail] == ["310100"]


def test_balance_larger_than_the_patients_part_pays_it_all() -> None:
    s = settle([line("1", 50_000, JIA)], employee(100_000))
    assert (s.acct_pay_fen, s.psn_cash_pay_fen, s.balc_fen) == (32_000, 0, 68_000)


def test_account_that_may_not_cover_self_paid_parts() -> None:
    """With account_covers_self_pay off, the 丙 100.00 is cash whatever the balance."""
    policy = replace(EMPLOYEES, account_covers_self_pay=False)
    s = settle([line("1", 10_000, BING), line("2", 50_000, JIA)], employee(100_000), policy=policy)
    assert (s.psn_part_amt_fen, s.acct_pay_fen, s.psn_cash_pay_fen) == (42_000, 32_000, 10_000)


def test_annual_fund_cap_limits_an_admission() -> None:
    """10.00 left under the 450 000.00 cap: the fund pays 10.00, the next admission 0."""
    before = acc(fund=45_000_000 - 1_000)
    s = settle([line("1", 500_000, JIA)], employee(), benefit=Benefit.inpatient, before=before)
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (40_000, 1_000)
    assert s.accumulators_after.fund_paid_fen == 45_000_000
    nxt = settle(
        [line("1", 500_000, JIA)],
        employee(),
        benefit=Benefit.inpatient,
        before=s.accumulators_after,
    )
    assert nxt.hifp_pay_fen == 0


def test_inpatient_deductible_is_per_admission() -> None:
    """A used outpatient deductible does not lower the admission's; retired +3 pts."""
    s = settle(
        [line("1", 1_000_000, JIA)],
        employee(retired=True),
        level=Level.level3,
        benefit=Benefit.inpatient,
        before=acc(deductible=15_000),
    )
    assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (80_000, 809_600)  # 88 % of 9 200
    assert s.accumulators_after.deductible_used_fen == 15_000


def test_empty_bill_settles_to_zero() -> None:
    s = settle([], employee(5_000))
    assert (s.medfee_sumamt_fen, s.fund_pay_sumamt_fen, s.acct_pay_fen) == (0, 0, 0)
    assert (s.balc_fen, s.accumulators_after) == (5_000, FRESH)


@pytest.mark.parametrize("benefit", list(Benefit))
def test_cancellation_takes_the_settlement_back_out_of_the_accumulators(benefit: Benefit) -> None:
    before = acc(5_000, 30_000, 70_000)
    s = settle([line("1", 80_000, JIA)], employee(), benefit=benefit, before=before)
    assert s.accumulators_after != before
    assert reverse_accumulators(s.accumulators_after, s.taken, benefit) == before


def test_cancellation_that_would_go_below_zero_is_refused() -> None:
    """Reversing against counters that never saw the settlement is a bug."""
    s = settle([line("1", 80_000, JIA)], employee())
    with pytest.raises(DomainInvariantViolation, match="below zero"):
        reverse_accumulators(FRESH, s.taken, Benefit.outpatient)
    with pytest.raises(DomainInvariantViolation, match="2026 settlement against 2027"):
        reverse_accumulators(replace(s.accumulators_after, year=2027), s.taken, Benefit.outpatient)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"medfee_sumamt_fen": 50_001}, "identity 1"),
        ({"oth_pay_fen": 1}, "identity 2"),
        ({"hosp_part_amt_fen": 1}, "identity 3"),
        ({"psn_cash_pay_fen": 22_001}, "identity 4"),
        ({"balc_fen": 1}, "identity 5"),
        ({"acct_mulaid_pay_fen": 22_001, "psn_cash_pay_fen": -1}, "must not be negative"),
        ({"hifp_pay_fen": 30_001, "fund_pay_sumamt_fen": 30_001, "psn_part_amt_fen": 19_999,
          "psn_cash_pay_fen": 9_999}, "setldetail fund rows"),
    ],
)  # fmt: skip
def test_check_identities_names_the_broken_identity(change: dict[str, int], names: str) -> None:
    s = settle([line("1", 50_000, JIA)], employee(10_000))
    check_identities(s)
    with pytest.raises(DomainInvariantViolation, match=names):
        check_identities(replace(s, **change))


def test_adjudicate_refuses_mismatched_inputs() -> None:
    """Another scheme's or another year's policy, a negative balance: programmer errors."""
    with pytest.raises(DomainInvariantViolation, match="another scheme"):
        settle([line("1", 100, JIA)], RESIDENT, policy=EMPLOYEES)
    with pytest.raises(DomainInvariantViolation, match="accumulators of 2027"):
        settle([line("1", 100, JIA)], employee(), before=replace(FRESH, year=2027))
    with pytest.raises(DomainInvariantViolation, match="balance is negative"):
        settle([line("1", 100, JIA)], employee(-1))


# --- the policy book ---------------------------------------------------------------------


def test_shipped_policies_hold_the_domain_4_8_figures() -> None:
    out, inp = EMPLOYEES.outpatient, EMPLOYEES.inpatient
    assert (out.deductible_fen_employed, out.annual_limit_fen_retired) == (20_000, 250_000)
    assert inp.deductible_fen == {"community": 16_000, "1": 20_000, "2": 40_000, "3": 80_000}
    assert inp.ratio_bp["3"].retired == 8_800
    assert (RESIDENTS.fund_annual_cap_fen, RESIDENTS.personal_account) == (24_000_000, False)
    assert set(RESIDENTS.outpatient.ratio_bp) == {"community"}


def test_missing_policy_names_what_was_asked() -> None:
    with pytest.raises(PolicyNotFound) as info:
        BOOK.get("510100", "310", 1999)
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no policy for insured region 510100, scheme 310, year 1999"


SHIPPED = (importlib.resources.files("settlement") / "policies" / "510100-310-2026.toml").read_text(
    encoding="utf-8"
)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("510100-310-2025.toml", SHIPPED, "differs from the file name"),
        ("chengdu.toml", SHIPPED, "name is not"),
        (
            "510100-310-2026.toml",
            SHIPPED.replace("ratio_bp.3 =", "ratio_bp.4 =", 1),
            "outpatient.ratio_bp has unknown level(s) ['4']",
        ),
        (
            "510100-310-2026.toml",
            SHIPPED.replace(
                "[cross_region]",
                "ratio_bp.pharmacy = { employed = 1, retired = 1 }\n\n[cross_region]",
            ),  # in [inpatient]
            "inpatient.ratio_bp has unknown level(s) ['pharmacy']",
        ),
        ("510100-310-2026.toml", SHIPPED.replace("deductible_fen.3 = 80_000", ""), "lacks"),
        ("510100-310-2026.toml", SHIPPED.replace("= 20_000 ", "= 200.0 ", 1), "Expected `int`"),
        ("510100-310-2026.toml", SHIPPED.replace("= 6000,", "= 10001,", 1), "<= 10000"),
        (
            "510100-310-2026.toml",
            SHIPPED.replace("region", "surprise = 1\nregion", 1),
            "unknown field",
        ),
        (
            "510100-310-2026.toml",
            SHIPPED.replace(", unfiled = 8000", ""),
            "cross_region.ratio_factor_bp needs exactly filed, referral and unfiled",
        ),
        ("510100-310-2026.toml", SHIPPED.replace("filed = 10000", "filed = 10001"), "<= 10000"),
    ],
)
def test_bad_policy_files_are_refused_at_load(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(PolicyFileError, match=re.escape(message)):
        PolicyBook(tmp_path)


def test_a_directory_of_policies_loads_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "510100-310-2026.toml").write_text(SHIPPED, encoding="utf-8")
    (tmp_path / "README.md").write_text("not a policy", encoding="utf-8")
    book = PolicyBook(tmp_path)
    assert len(book) == 1
    assert book.get("510100", "310", 2026) == EMPLOYEES
