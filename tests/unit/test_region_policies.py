"""The three Sichuan regions' policies (settlement/policies/, unverified fixtures) worked
to the fen: one visit, three insured regions, three answers — and the same visit
across regions, where the insured region's ratio is scaled by the factor of the
person's filing status for the treating region (DOMAIN.md §4.7)."""

from __future__ import annotations

import pytest

from settlement.adjudication import (
    Accumulators,
    Benefit,
    PersonFacts,
    SettlementSplit,
    adjudicate,
)
from settlement.catalog import DetailSplit, ItemClass
from settlement.policy import Filing, Level, PolicyBook

BOOK = PolicyBook()
FRESH = Accumulators(year=2026, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0)


def line(sn: str, *, inscp_fen: int = 0, fulamt_fen: int = 0) -> DetailSplit:
    return DetailSplit(
        feedetl_sn=sn,
        det_item_fee_sumamt_fen=inscp_fen + fulamt_fen,
        fulamt_ownpay_amt_fen=fulamt_fen,
        overlmt_amt_fen=0,
        preselfpay_amt_fen=0,
        inscp_scp_amt_fen=inscp_fen,
        pric_uplmt_amt_fen=0,
        selfpay_prop_bp=0,
        chrgitm_lv=ItemClass.bing if fulamt_fen else ItemClass.jia,
        memo="",
    )


JIA_1000 = line("1", inscp_fen=100_000)  # 1 000.00 of 甲, all in scope
BING_100 = line("2", fulamt_fen=10_000)  # 100.00 of 丙, wholly self-paid


def employee(balance_fen: int) -> PersonFacts:
    return PersonFacts(insutype="310", retired=False, acct_balance_fen=balance_fen)


def settle(
    region: str, lines: list[DetailSplit], balance_fen: int, factor_bp: int = 10_000
) -> SettlementSplit:
    policy = BOOK.get(region, "310", 2026)
    return adjudicate(
        lines, employee(balance_fen), FRESH, policy, Level("2"), Benefit.outpatient, True, factor_bp
    )


@pytest.mark.parametrize(
    ("region", "fund", "acct", "cash"),
    [
        # Chengdu: (1 000.00 − 200.00 deductible) × 60 % = 480.00; 520.00 the person's,
        # 500.00 of it from the account (all it has), 20.00 cash.
        ("510100", 48_000, 50_000, 2_000),
        # Mianyang: (1 000.00 − 150.00) × 55 % = 467.50; 532.50: 500.00 + 32.50 cash.
        ("510700", 46_750, 50_000, 3_250),
        # Leshan: (1 000.00 − 180.00) × 50 % = 410.00; 590.00: 500.00 + 90.00 cash.
        ("511100", 41_000, 50_000, 9_000),
    ],
)
def test_one_visit_three_insured_regions(region: str, fund: int, acct: int, cash: int) -> None:
    s = settle(region, [JIA_1000], 50_000)
    assert (s.hifp_pay_fen, s.acct_pay_fen, s.psn_cash_pay_fen) == (fund, acct, cash)


def test_whether_the_account_covers_self_pay_is_the_regions_rule() -> None:
    """With 100.00 of 丙 beside the 1 000.00 of 甲 and 1 000.00 in the account: Chengdu's
    account covers the 丙 (620.00 from the account, no cash); Mianyang's does not
    (632.50 − 100.00 = 532.50 from the account, the 丙's 100.00 in cash)."""
    chengdu = settle("510100", [JIA_1000, BING_100], 100_000)
    assert (chengdu.hifp_pay_fen, chengdu.acct_pay_fen, chengdu.psn_cash_pay_fen) == (
        48_000,
        62_000,
        0,
    )
    mianyang = settle("510700", [JIA_1000, BING_100], 100_000)
    assert (mianyang.hifp_pay_fen, mianyang.acct_pay_fen, mianyang.psn_cash_pay_fen) == (
        46_750,
        53_250,
        10_000,
    )


@pytest.mark.parametrize(
    ("region", "filing", "ratio_bp", "fund"),
    [
        # Chengdu-insured, filed where treated: the full 60 %.
        ("510100", Filing.filed, 6000, 48_000),
        # Chengdu-insured, not filed: 60 % × 80 % = 48 %; 800.00 × 48 % = 384.00.
        ("510100", Filing.unfiled, 4800, 38_400),
        # Mianyang-insured, not filed: 55 % × 70 % = 38.5 %; 850.00 × 38.5 % = 327.25.
        ("510700", Filing.unfiled, 3850, 32_725),
        # Leshan-insured, referred: 50 % × 85 % = 42.5 %; 820.00 × 42.5 % = 348.50.
        ("511100", Filing.referral, 4250, 34_850),
        # Leshan-insured, filed: 50 % × 95 % = 47.5 %; 820.00 × 47.5 % = 389.50.
        ("511100", Filing.filed, 4750, 38_950),
    ],
)
def test_cross_region_the_insured_regions_ratio_times_the_filing_factor(
    region: str, filing: Filing, ratio_bp: int, fund: int
) -> None:
    policy = BOOK.get(region, "310", 2026)
    factor = policy.cross_region.factor_bp(filing)
    s = settle(region, [JIA_1000], 50_000, factor)
    assert s.hifp_pay_fen == fund
    assert s.psn_part_amt_fen == 100_000 - fund
    text = s.setldetail[0].setl_proc_info
    assert f"支付比例 {ratio_bp // 100}.{ratio_bp % 100:02d}%" in text
    if factor != 10_000:
        assert "异地 ×" in text


def test_leshan_pharmacies_take_the_account_first() -> None:
    """Leshan's employees at a pharmacy (先个人账户后统筹): 300.00 of 甲 with 100.00 in the
    account — the account pays its 100.00 first, the pool sees the 200.00 left: 180.00
    deductible, 40 % of 20.00 = 8.00; 192.00 cash. Chengdu's rule (pool first) on the
    same bill: (300.00 − 200.00) × 50 % = 50.00, the account 100.00, 150.00 cash. With
    500.00 in the account Leshan's pays the whole bill and the pool nothing."""
    jia_300 = [line("1", inscp_fen=30_000)]

    def pharmacy(region: str, balance: int) -> SettlementSplit:
        policy = BOOK.get(region, "310", 2026)
        person = employee(balance)
        return adjudicate(
            jia_300, person, FRESH, policy, Level("community"), Benefit.pharmacy, True
        )

    leshan = pharmacy("511100", 10_000)
    assert (leshan.acct_pay_fen, leshan.hifp_pay_fen, leshan.psn_cash_pay_fen) == (
        10_000,
        800,
        19_200,
    )
    assert leshan.act_pay_dedc_fen == 18_000
    chengdu = pharmacy("510100", 10_000)
    assert (chengdu.acct_pay_fen, chengdu.hifp_pay_fen, chengdu.psn_cash_pay_fen) == (
        10_000,
        5_000,
        15_000,
    )
    rich = pharmacy("511100", 50_000)
    assert (rich.acct_pay_fen, rich.hifp_pay_fen, rich.act_pay_dedc_fen) == (30_000, 0, 0)
