"""Adjudication: the pure function from fee-detail splits, the person's facts and
accumulators, and the insured region's policy to the settlement split
(DOMAIN.md §4.3-4.4). No I/O; all money in fen, ratios in basis points.

Steps: sum the detail splits; the in-scope sum S first consumes the remaining
deductible (annual for outpatient and pharmacy, per admission for inpatient); the
pooled fund pays ratio × (S − deductible consumed), half-up to the fen, capped by what
is left of the annual outpatient limit (outpatient and pharmacy) and of the annual
fund cap; where the level has no pooling, the fund pays nothing and no deductible is
consumed. The patient's part is the rest; the personal account (where the scheme has
one and the HIS asks for it) pays what it can of that part; cash pays the remainder.

Invariants: every result satisfies DOMAIN.md §2.8 identities 1-5, has no negative
amount and setldetail fund rows that add up to fund_pay_sumamt (`check_identities`,
run before anything is returned); the fund never pays past the remaining outpatient
limit or annual cap, nor the account past its balance; `reverse_accumulators` undoes
exactly what a settlement added and never takes a counter below zero.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Literal

from msgspec import Struct
from msgspec.structs import replace

from settlement.catalog import DetailSplit
from settlement.errors import check
from settlement.money import BP_ONE, bp_to_percent_text, fen_to_yuan, ratio_of
from settlement.policy import PHARMACY_KEY, Level, PolicyParams

FUND_TYPES = {
    "310": ("310100", "职工基本医疗保险统筹基金"),
    "390": ("390100", "城乡居民基本医疗保险基金"),
}
ACCOUNT_FUND_TYPE = ("310200", "职工个人账户基金")


class Benefit(enum.StrEnum):
    """Which pooling pays: the annual outpatient pooling (pharmacy purchases with its
    "pharmacy" ratio) or the per-admission inpatient pooling."""

    outpatient = "outpatient"
    inpatient = "inpatient"
    pharmacy = "pharmacy"


_BENEFIT_TEXT = {
    Benefit.outpatient: "门诊统筹",
    Benefit.inpatient: "住院统筹",
    Benefit.pharmacy: "药店购药统筹",
}


class Accumulators(Struct, frozen=True, kw_only=True):
    """A person's running totals for one calendar year (5206 人员累计信息)."""

    year: int
    deductible_used_fen: int  # outpatient annual deductible consumed
    outpatient_fund_paid_fen: int
    fund_paid_fen: int  # all basic pooled fund payments this year


class PersonFacts(Struct, frozen=True, kw_only=True):
    """What adjudication needs to know of the person (from 1101)."""

    insutype: Literal["310", "390"]
    retired: bool
    acct_balance_fen: int


class SetlDetailRow(Struct, frozen=True, kw_only=True):
    """One `setldetail[]` row: what one fund type paid, and how it was reckoned."""

    fund_pay_type: str
    fund_pay_type_name: str
    inscp_scp_amt_fen: int
    crt_payb_lmt_amt_fen: int
    fund_payamt_fen: int
    setl_proc_info: str


class Taken(Struct, frozen=True, kw_only=True):
    """What one settlement added to its year's accumulators: all a cancellation needs
    to take it back out (`reverse_accumulators`), whether it has the split or only the
    stored settlement."""

    year: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int


class SettlementSplit(Struct, frozen=True, kw_only=True):
    """Every `setlinfo` money field in fen (DOMAIN.md §2.6 names + `_fen`), the
    setldetail rows, and the accumulators as this settlement leaves them."""

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

    @property
    def taken(self) -> Taken:
        return Taken(
            year=self.accumulators_after.year,
            act_pay_dedc_fen=self.act_pay_dedc_fen,
            hifp_pay_fen=self.hifp_pay_fen,
        )


class _Pooling(Struct, frozen=True, kw_only=True):
    """What the basic pooled fund does for one settlement, with the figures the
    setldetail text reports."""

    deductible_fen: int  # the deductible that applies (annual outpatient, per admission)
    deductible_used_before_fen: int
    deductible_consumed_fen: int
    ratio_bp: int | None  # None: no pooled payment at this level; else after the factor
    payable_limit_fen: int  # what the fund could still pay before this settlement
    fund_fen: int
    factor_bp: int = BP_ONE  # the cross-region factor the policy's ratio was scaled by


def _pool(
    inscp_fen: int,
    deductible_fen: int,
    used_fen: int,
    policy_ratio: int | None,
    payable_fen: int,
    factor_bp: int,
) -> _Pooling:
    """Deductible first, then ratio × the rest half-up, capped by what is payable; the
    ratio is the policy's times the cross-region factor, half-up to the basis point.
    Where the level has no pooling, nothing is paid and no deductible is consumed."""
    ratio = None if policy_ratio is None else ratio_of(policy_ratio, factor_bp)
    consumed = 0 if ratio is None else min(inscp_fen, max(0, deductible_fen - used_fen))
    fund = 0 if ratio is None else min(ratio_of(inscp_fen - consumed, ratio), payable_fen)
    return _Pooling(
        deductible_fen=deductible_fen,
        deductible_used_before_fen=used_fen,
        deductible_consumed_fen=consumed,
        ratio_bp=ratio,
        payable_limit_fen=payable_fen,
        fund_fen=fund,
        factor_bp=factor_bp,
    )


def _outpatient_pooling(
    inscp_fen: int,
    person: PersonFacts,
    acc: Accumulators,
    policy: PolicyParams,
    key: str,
    factor_bp: int,
) -> _Pooling:
    out = policy.outpatient
    limit = out.annual_limit_fen_retired if person.retired else out.annual_limit_fen_employed
    payable = min(
        limit - acc.outpatient_fund_paid_fen, policy.fund_annual_cap_fen - acc.fund_paid_fen
    )
    ratio = out.ratio_bp.get(key)
    return _pool(
        inscp_fen,
        out.deductible_fen_retired if person.retired else out.deductible_fen_employed,
        acc.deductible_used_fen,
        None if ratio is None else ratio.for_person(person.retired),
        max(0, payable),
        factor_bp,
    )


def _inpatient_pooling(
    inscp_fen: int,
    person: PersonFacts,
    acc: Accumulators,
    policy: PolicyParams,
    level: Level,
    factor_bp: int,
) -> _Pooling:
    # The inpatient deductible is per admission: it never reads the annual accumulator.
    inp = policy.inpatient
    ratio = inp.ratio_bp.get(level.value)
    return _pool(
        inscp_fen,
        inp.deductible_fen.get(level.value, 0),
        0,
        None if ratio is None else ratio.for_person(person.retired),
        max(0, policy.fund_annual_cap_fen - acc.fund_paid_fen),
        factor_bp,
    )


def _check_inputs(
    lines: Sequence[DetailSplit], person: PersonFacts, acc: Accumulators, policy: PolicyParams
) -> None:
    check(person.insutype == policy.insutype, "policy is for another scheme than the person's")
    check(acc.year == policy.year, f"accumulators of {acc.year} with the policy of {policy.year}")
    check(person.acct_balance_fen >= 0, "personal account balance is negative")
    check(
        min(acc.deductible_used_fen, acc.outpatient_fund_paid_fen, acc.fund_paid_fen) >= 0,
        "accumulators are negative",
    )
    for d in lines:
        parts = (
            d.fulamt_ownpay_amt_fen,
            d.overlmt_amt_fen,
            d.preselfpay_amt_fen,
            d.inscp_scp_amt_fen,
        )
        check(
            min(parts) >= 0 and sum(parts) == d.det_item_fee_sumamt_fen,
            f"detail {d.feedetl_sn}: the split is negative or does not add up",
        )


def _account_pay(
    policy: PolicyParams, acct_used: bool, balance_fen: int, psn_part_fen: int, self_paid_fen: int
) -> int:
    """What the personal account pays (DOMAIN.md §4.4): only where the scheme has
    accounts and the HIS asked; never past the balance; the 丙类 and over-ceiling parts
    (`self_paid_fen`) only where the policy lets the account cover them."""
    if not (policy.personal_account and acct_used):
        return 0
    payable = psn_part_fen if policy.account_covers_self_pay else psn_part_fen - self_paid_fen
    return min(balance_fen, max(0, payable))


def _pool_text(benefit: Benefit, pool: _Pooling) -> str:
    ratio = "本级别不予统筹支付" if pool.ratio_bp is None else bp_to_percent_text(pool.ratio_bp)
    if pool.ratio_bp is not None and pool.factor_bp != BP_ONE:
        ratio += f" (异地 × {bp_to_percent_text(pool.factor_bp)})"
    return (
        f"{_BENEFIT_TEXT[benefit]}: 起付线 {fen_to_yuan(pool.deductible_fen)}"
        f" 已付 {fen_to_yuan(pool.deductible_used_before_fen)}"
        f" 本次 {fen_to_yuan(pool.deductible_consumed_fen)}; 支付比例 {ratio};"
        f" 可支付限额 {fen_to_yuan(pool.payable_limit_fen)} 本次支付 {fen_to_yuan(pool.fund_fen)}"
    )


def _setldetail(
    insutype: str, benefit: Benefit, inscp_fen: int, pool: _Pooling, balance_fen: int, acct: int
) -> tuple[SetlDetailRow, ...]:
    code, name = FUND_TYPES[insutype]
    rows = [
        SetlDetailRow(
            fund_pay_type=code,
            fund_pay_type_name=name,
            inscp_scp_amt_fen=inscp_fen,
            crt_payb_lmt_amt_fen=pool.payable_limit_fen,
            fund_payamt_fen=pool.fund_fen,
            setl_proc_info=_pool_text(benefit, pool),
        )
    ]
    if acct > 0:
        code, name = ACCOUNT_FUND_TYPE
        rows.append(
            SetlDetailRow(
                fund_pay_type=code,
                fund_pay_type_name=name,
                inscp_scp_amt_fen=inscp_fen,
                crt_payb_lmt_amt_fen=balance_fen,
                fund_payamt_fen=acct,
                setl_proc_info=f"个人账户余额 {fen_to_yuan(balance_fen)} 本次支付 {fen_to_yuan(acct)}",
            )
        )
    return tuple(rows)


class _AccountFirst(Struct, frozen=True, kw_only=True):
    applies: bool
    acct_fen: int = 0  # what the account pays, before the pool
    on_inscp_fen: int = 0  # of it, in-scope money the pool then does not see


def _account_first(
    policy: PolicyParams,
    benefit: Benefit,
    acct_used: bool,
    balance_fen: int,
    lines: Sequence[DetailSplit],
) -> _AccountFirst:
    """先个人账户后统筹 (DOMAIN.md §4.4; the region's `pharmacy_account_first`): at a
    pharmacy the account pays first — the parts it may pay outside the scope (the 乙
    first self-paid part, and 丙 and over-ceiling parts where the policy lets it), then
    in-scope money — and the pool's deductible and ratio apply only to the in-scope
    money the account left. [I]: the order within the bill is this engine's reading."""
    if not (benefit is Benefit.pharmacy and policy.outpatient.pharmacy_account_first):
        return _AccountFirst(applies=False)
    medfee = sum(d.det_item_fee_sumamt_fen for d in lines)
    outside = sum(d.fulamt_ownpay_amt_fen + d.overlmt_amt_fen for d in lines)
    acct = _account_pay(policy, acct_used, balance_fen, medfee, outside)
    may_outside = sum(d.preselfpay_amt_fen for d in lines) + (
        outside if policy.account_covers_self_pay else 0
    )
    return _AccountFirst(applies=True, acct_fen=acct, on_inscp_fen=max(0, acct - may_outside))


def adjudicate(
    lines: Sequence[DetailSplit],
    person: PersonFacts,
    acc: Accumulators,
    policy: PolicyParams,
    level: Level,
    benefit: Benefit,
    acct_used: bool,
    factor_bp: int = BP_ONE,
) -> SettlementSplit:
    """The settlement of `lines` for `person` (DOMAIN.md §4.3-4.4), checked against
    every identity of §2.8 before it is returned. `level` is ignored for pharmacy
    purchases, which use the outpatient "pharmacy" ratio. `factor_bp` scales the
    policy's ratio for a cross-region settlement (§4.7: the person's filing status)."""
    _check_inputs(lines, person, acc, policy)
    medfee = sum(d.det_item_fee_sumamt_fen for d in lines)
    fulamt = sum(d.fulamt_ownpay_amt_fen for d in lines)
    overlmt = sum(d.overlmt_amt_fen for d in lines)
    inscp = sum(d.inscp_scp_amt_fen for d in lines)
    balance = person.acct_balance_fen
    acct_first = _account_first(policy, benefit, acct_used, balance, lines)
    pooled = inscp - acct_first.on_inscp_fen
    if benefit is Benefit.inpatient:
        pool = _inpatient_pooling(pooled, person, acc, policy, level, factor_bp)
        after = replace(acc, fund_paid_fen=acc.fund_paid_fen + pool.fund_fen)
    else:
        key = PHARMACY_KEY if benefit is Benefit.pharmacy else level.value
        pool = _outpatient_pooling(pooled, person, acc, policy, key, factor_bp)
        after = replace(
            acc,
            deductible_used_fen=acc.deductible_used_fen + pool.deductible_consumed_fen,
            outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen + pool.fund_fen,
            fund_paid_fen=acc.fund_paid_fen + pool.fund_fen,
        )
    psn_part = medfee - pool.fund_fen  # hosp_part_amt is 0: no hospital-borne share yet
    acct = (
        acct_first.acct_fen
        if acct_first.applies
        else _account_pay(policy, acct_used, balance, psn_part, fulamt + overlmt)
    )
    split = SettlementSplit(
        medfee_sumamt_fen=medfee,
        fulamt_ownpay_amt_fen=fulamt,
        overlmt_selfpay_fen=overlmt,
        preselfpay_amt_fen=sum(d.preselfpay_amt_fen for d in lines),
        inscp_scp_amt_fen=inscp,
        act_pay_dedc_fen=pool.deductible_consumed_fen,
        hifp_pay_fen=pool.fund_fen,
        fund_pay_sumamt_fen=pool.fund_fen,  # the other funds pay nothing yet
        psn_part_amt_fen=psn_part,
        acct_pay_fen=acct,
        psn_cash_pay_fen=psn_part - acct,
        balc_before_fen=balance,
        balc_fen=balance - acct,
        setldetail=_setldetail(policy.insutype, benefit, inscp, pool, balance, acct),
        accumulators_after=after,
    )
    check_identities(split)
    return split


def check_identities(s: SettlementSplit) -> None:
    """DOMAIN.md §2.8 identities 1-5, non-negative amounts, setldetail = fund total;
    raises DomainInvariantViolation naming the identity that fails."""
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
    negative = [f for f in s.__struct_fields__ if f.endswith("_fen") and getattr(s, f) < 0]
    check(not negative, f"amounts must not be negative: {negative}")
    check(
        all(
            min(r.inscp_scp_amt_fen, r.crt_payb_lmt_amt_fen, r.fund_payamt_fen) >= 0
            for r in s.setldetail
        ),
        "setldetail amounts must not be negative",
    )
    check(
        sum(r.fund_payamt_fen for r in s.setldetail if r.fund_pay_type != ACCOUNT_FUND_TYPE[0])
        == s.fund_pay_sumamt_fen,
        "setldetail fund rows (all but 310200) add up to fund_pay_sumamt",
    )
    check(
        s.act_pay_dedc_fen + s.hifp_pay_fen <= s.inscp_scp_amt_fen,
        "act_pay_dedc + hifp_pay exceed the in-scope sum",
    )


def reverse_accumulators(acc: Accumulators, taken: Taken, benefit: Benefit) -> Accumulators:
    """The accumulators with a settlement taken back out (a cancellation):
    `reverse_accumulators(s.accumulators_after, s.taken, benefit)` is the accumulators
    `s` started from. `benefit` must be the one the settlement was adjudicated under."""
    check(
        acc.year == taken.year,
        f"cancelling a {taken.year} settlement against {acc.year} accumulators",
    )
    outpatient = benefit is not Benefit.inpatient
    after = replace(
        acc,
        deductible_used_fen=acc.deductible_used_fen - (taken.act_pay_dedc_fen if outpatient else 0),
        outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen
        - (taken.hifp_pay_fen if outpatient else 0),
        fund_paid_fen=acc.fund_paid_fen - taken.hifp_pay_fen,
    )
    check(
        min(after.deductible_used_fen, after.outpatient_fund_paid_fen, after.fund_paid_fen) >= 0,
        "cancelling this settlement would take accumulators below zero",
    )
    return after


def retake_accumulators(acc: Accumulators, taken: Taken, benefit: Benefit) -> Accumulators:
    """The accumulators with a cancelled settlement taken in again (a reversal of its
    cancellation): the inverse of `reverse_accumulators`. The caller checks the result
    against the year's limits; this only adds."""
    check(
        acc.year == taken.year,
        f"reinstating a {taken.year} settlement against {acc.year} accumulators",
    )
    outpatient = benefit is not Benefit.inpatient
    return replace(
        acc,
        deductible_used_fen=acc.deductible_used_fen + (taken.act_pay_dedc_fen if outpatient else 0),
        outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen
        + (taken.hifp_pay_fen if outpatient else 0),
        fund_paid_fen=acc.fund_paid_fen + taken.hifp_pay_fen,
    )
