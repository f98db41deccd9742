"""Adjudication: the pure function from fee-detail splits, the person's facts and
accumulators, and the insured region's policy to the settlement split
(DOMAIN.md §4.3-4.4). No I/O; all money in fen, ratios in basis points.

Steps: sum the detail splits; the in-scope sum S first consumes the remaining
deductible; the pooled fund pays ratio × (S − deductible consumed), half-up to the
fen, capped by what is left of the annual outpatient limit (outpatient and pharmacy)
and of the annual fund cap; the patient's part is the rest; the personal account
(employees only, when the HIS asks for it) pays what it can of that part; cash pays
the remainder. `check_identities` holds every result to DOMAIN.md §2.8 before it is
returned.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Literal

from msgspec import Struct

from settlement.catalog import DetailSplit
from settlement.errors import check
from settlement.money import fen_to_yuan, ratio_of
from settlement.policy import PHARMACY_KEY, Level, PolicyParams

FUND_TYPES = {
    "310": ("310100", "职工基本医疗保险统筹基金"),
    "390": ("390100", "城乡居民基本医疗保险基金"),
}
ACCOUNT_FUND_TYPE = ("310200", "职工个人账户基金")


class Benefit(enum.StrEnum):
    outpatient = "outpatient"
    inpatient = "inpatient"
    pharmacy = "pharmacy"


class Accumulators(Struct, frozen=True, kw_only=True):
    year: int
    deductible_used_fen: int  # outpatient annual deductible consumed
    outpatient_fund_paid_fen: int
    fund_paid_fen: int  # all basic pooled fund payments this year


class PersonFacts(Struct, frozen=True, kw_only=True):
    insutype: Literal["310", "390"]
    retired: bool
    acct_balance_fen: int


class SetlDetailRow(Struct, frozen=True, kw_only=True):
    fund_pay_type: str
    fund_pay_type_name: str
    inscp_scp_amt_fen: int
    crt_payb_lmt_amt_fen: int
    fund_payamt_fen: int
    setl_proc_info: str


class SettlementSplit(Struct, frozen=True, kw_only=True):
    medfee_sumamt_fen: int
    fulamt_ownpay_amt_fen: int
    overlmt_selfpay_fen: int
    preselfpay_amt_fen: int
    inscp_scp_amt_fen: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    cvlserv_pay_fen: int = 0
    hifes_pay_fen: int = 0
    hifmi_pay_fen: int = 0
    hifob_pay_fen: int = 0
    hifdm_pay_fen: int = 0
    maf_pay_fen: int = 0
    oth_pay_fen: int = 0
    fund_pay_sumamt_fen: int
    psn_part_amt_fen: int
    acct_pay_fen: int
    acct_mulaid_pay_fen: int = 0
    psn_cash_pay_fen: int
    hosp_part_amt_fen: int = 0
    balc_before_fen: int
    balc_fen: int
    setldetail: tuple[SetlDetailRow, ...]
    accumulators_after: Accumulators


class _Pooling(Struct, frozen=True):
    deductible_consumed_fen: int
    fund_fen: int
    payable_limit_fen: int  # what the fund could still pay before this settlement
    ratio_bp: int
    deductible_left_fen: int


def _outpatient_pooling(
    inscp_fen: int, person: PersonFacts, acc: Accumulators, policy: PolicyParams, key: str
) -> _Pooling:
    out = policy.outpatient
    retired = person.retired
    limit = out.annual_limit_fen_retired if retired else out.annual_limit_fen_employed
    deductible = out.deductible_fen_retired if retired else out.deductible_fen_employed
    payable = max(
        0, min(limit - acc.outpatient_fund_paid_fen, policy.fund_annual_cap_fen - acc.fund_paid_fen)
    )
    ratio = out.ratio_bp.get(key)
    deductible_left = max(0, deductible - acc.deductible_used_fen)
    if ratio is None:  # no outpatient pooling at this level: nothing consumed, nothing paid
        return _Pooling(0, 0, payable, 0, deductible_left)
    consumed = min(inscp_fen, deductible_left)
    k = ratio.for_person(retired)
    return _Pooling(
        consumed, min(ratio_of(inscp_fen - consumed, k), payable), payable, k, deductible_left
    )


def _inpatient_pooling(
    inscp_fen: int, person: PersonFacts, acc: Accumulators, policy: PolicyParams, level: Level
) -> _Pooling:
    inp = policy.inpatient
    payable = max(0, policy.fund_annual_cap_fen - acc.fund_paid_fen)
    ratio = inp.ratio_bp.get(level.value)
    deductible = inp.deductible_fen.get(level.value, 0)
    if ratio is None:
        return _Pooling(0, 0, payable, 0, deductible)
    consumed = min(inscp_fen, deductible)
    k = ratio.for_person(person.retired)
    return _Pooling(
        consumed, min(ratio_of(inscp_fen - consumed, k), payable), payable, k, deductible
    )


def adjudicate(
    lines: Sequence[DetailSplit],
    person: PersonFacts,
    acc: Accumulators,
    policy: PolicyParams,
    level: Level,
    benefit: Benefit,
    acct_used: bool,
) -> SettlementSplit:
    check(person.insutype == policy.insutype, "policy is for another scheme than the person's")
    check(person.acct_balance_fen >= 0, "personal account balance is negative")
    medfee = sum(d.det_item_fee_sumamt_fen for d in lines)
    fulamt = sum(d.fulamt_ownpay_amt_fen for d in lines)
    overlmt = sum(d.overlmt_amt_fen for d in lines)
    preself = sum(d.preselfpay_amt_fen for d in lines)
    inscp = sum(d.inscp_scp_amt_fen for d in lines)
    if benefit is Benefit.inpatient:
        pool = _inpatient_pooling(inscp, person, acc, policy, level)
        after = Accumulators(
            year=acc.year,
            deductible_used_fen=acc.deductible_used_fen,
            outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen,
            fund_paid_fen=acc.fund_paid_fen + pool.fund_fen,
        )
    else:
        key = PHARMACY_KEY if benefit is Benefit.pharmacy else level.value
        pool = _outpatient_pooling(inscp, person, acc, policy, key)
        after = Accumulators(
            year=acc.year,
            deductible_used_fen=acc.deductible_used_fen + pool.deductible_consumed_fen,
            outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen + pool.fund_fen,
            fund_paid_fen=acc.fund_paid_fen + pool.fund_fen,
        )
    psn_part = medfee - pool.fund_fen
    acct = 0
    if policy.personal_account and acct_used:
        payable = (
            psn_part if policy.account_covers_self_pay else max(0, psn_part - fulamt - overlmt)
        )
        acct = min(person.acct_balance_fen, payable)
    code, name = FUND_TYPES[policy.insutype]
    rows = [
        SetlDetailRow(
            fund_pay_type=code,
            fund_pay_type_name=name,
            inscp_scp_amt_fen=inscp,
            crt_payb_lmt_amt_fen=pool.payable_limit_fen,
            fund_payamt_fen=pool.fund_fen,
            setl_proc_info=(
                f"起付线剩余 {fen_to_yuan(pool.deductible_left_fen)} 本次起付 "
                f"{fen_to_yuan(pool.deductible_consumed_fen)}; 支付比例 {pool.ratio_bp / 100:g}%; "
                f"可支付限额 {fen_to_yuan(pool.payable_limit_fen)} 本次支付 {fen_to_yuan(pool.fund_fen)}"
            ),
        )
    ]
    if acct > 0:
        rows.append(
            SetlDetailRow(
                fund_pay_type=ACCOUNT_FUND_TYPE[0],
                fund_pay_type_name=ACCOUNT_FUND_TYPE[1],
                inscp_scp_amt_fen=inscp,
                crt_payb_lmt_amt_fen=person.acct_balance_fen,
                fund_payamt_fen=acct,
                setl_proc_info=f"个人账户余额 {fen_to_yuan(person.acct_balance_fen)} 本次支付 {fen_to_yuan(acct)}",
            )
        )
    split = SettlementSplit(
        medfee_sumamt_fen=medfee,
        fulamt_ownpay_amt_fen=fulamt,
        overlmt_selfpay_fen=overlmt,
        preselfpay_amt_fen=preself,
        inscp_scp_amt_fen=inscp,
        act_pay_dedc_fen=pool.deductible_consumed_fen,
        hifp_pay_fen=pool.fund_fen,
        fund_pay_sumamt_fen=pool.fund_fen,
        psn_part_amt_fen=psn_part,
        acct_pay_fen=acct,
        psn_cash_pay_fen=psn_part - acct,
        balc_before_fen=person.acct_balance_fen,
        balc_fen=person.acct_balance_fen - acct,
        setldetail=tuple(rows),
        accumulators_after=after,
    )
    check_identities(split)
    return split


def check_identities(s: SettlementSplit) -> None:
    """DOMAIN.md §2.8 identities 1-5, non-negative amounts, setldetail = fund total."""
    funds = (
        s.hifp_pay_fen,
        s.cvlserv_pay_fen,
        s.hifes_pay_fen,
        s.hifmi_pay_fen,
        s.hifob_pay_fen,
        s.hifdm_pay_fen,
        s.maf_pay_fen,
        s.oth_pay_fen,
    )
    check(
        s.medfee_sumamt_fen
        == s.fulamt_ownpay_amt_fen
        + s.overlmt_selfpay_fen
        + s.preselfpay_amt_fen
        + s.inscp_scp_amt_fen,
        "identity 1: medfee_sumamt = fulamt_ownpay + overlmt_selfpay + preselfpay + inscp_scp",
    )
    check(s.fund_pay_sumamt_fen == sum(funds), "identity 2: fund_pay_sumamt = sum of the funds")
    check(
        s.psn_part_amt_fen == s.medfee_sumamt_fen - s.fund_pay_sumamt_fen - s.hosp_part_amt_fen,
        "identity 3: psn_part_amt = medfee_sumamt - fund_pay_sumamt - hosp_part_amt",
    )
    check(
        s.psn_part_amt_fen == s.acct_pay_fen + s.acct_mulaid_pay_fen + s.psn_cash_pay_fen,
        "identity 4: psn_part_amt = acct_pay + acct_mulaid_pay + psn_cash_pay",
    )
    check(
        s.balc_fen == s.balc_before_fen - s.acct_pay_fen,
        "identity 5: balc = balc before - acct_pay",
    )
    amounts = [getattr(s, f) for f in s.__struct_fields__ if f.endswith("_fen")]
    check(all(a >= 0 for a in amounts), "every amount is non-negative")
    check(
        sum(r.fund_payamt_fen for r in s.setldetail if r.fund_pay_type != ACCOUNT_FUND_TYPE[0])
        == s.fund_pay_sumamt_fen,
        "setldetail fund rows add up to fund_pay_sumamt",
    )
    check(s.act_pay_dedc_fen <= s.inscp_scp_amt_fen, "deductible consumed exceeds the in-scope sum")


def reverse_accumulators(acc: Accumulators, s: SettlementSplit, benefit: Benefit) -> Accumulators:
    """The accumulators with settlement `s` taken back out (a cancellation)."""
    outpatient = benefit is not Benefit.inpatient
    after = Accumulators(
        year=acc.year,
        deductible_used_fen=acc.deductible_used_fen - (s.act_pay_dedc_fen if outpatient else 0),
        outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen
        - (s.hifp_pay_fen if outpatient else 0),
        fund_paid_fen=acc.fund_paid_fen - s.hifp_pay_fen,
    )
    check(
        min(after.deductible_used_fen, after.outpatient_fund_paid_fen, after.fund_paid_fen) >= 0,
        "cancelling this settlement would take accumulators below zero",
    )
    return after
