"""Properties over random catalogs, bills, persons, accumulators and policies (the
shipped Chengdu fixtures and random ones, including levels without pooling and
accounts that may not cover self-paid parts):

* every line split adds up to its amount, with no negative part;
* every settlement satisfies DOMAIN.md §2.8 to the fen, nothing is negative, the fund
  never pays past the remaining outpatient limit or annual cap nor more than the
  in-scope sum above the deductible, the account never past its balance;
* more in-scope money never lowers the fund's payment;
* cancellation restores the accumulators exactly;
* a year of settlements and cancellations carried through the accumulators and the
  balance never passes a limit, and keeps the ledger summing to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import ledger
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
from settlement.policy import (
    PHARMACY_KEY,
    CrossRegionPolicy,
    InpatientPolicy,
    Level,
    OutpatientPolicy,
    PolicyBook,
    PolicyParams,
    RatioBp,
)

BOOK = PolicyBook()
SHIPPED = [BOOK.get("510100", t, 2026) for t in ("310", "390")]
LEVELS = [lv.value for lv in Level]

items = st.builds(
    CatalogItem,
    med_list_codg=st.just("X"),
    name=st.just("item"),
    chrgitm_lv=st.sampled_from(list(ItemClass)),
    list_type=st.just("101"),
    price_ceiling_fen_per_unit=st.one_of(st.none(), st.integers(0, 500_000)),
    selfpay_prop_bp=st.integers(0, 10_000),
)


@st.composite
def fee_lines(draw: st.DrawFn) -> FeeLine:
    """Mostly consistent lines (amount = price × quantity), sometimes not, so that
    the split's clamp is exercised too."""
    # Whole units at whole-fen prices (the common bill), or any wire value at all.
    cnt_e4 = draw(st.integers(1, 100).map(lambda n: n * 10_000) | st.integers(0, 1_000_000))
    pric_e6 = draw(st.integers(1, 1_000_000).map(lambda fen: fen * 10_000) | st.integers(0, 10**11))
    amount = line_amount_fen(cnt_e4, pric_e6)
    if draw(st.integers(0, 9)) == 0:
        amount = draw(st.integers(0, 10**9))
    return FeeLine("1", "X", cnt_e4, pric_e6, amount)


# One line in four is not in the catalog; the rest are 甲, 乙 or 丙 items.
catalog_or_unmapped = st.one_of(items, items, items, st.none())
splits = st.builds(split_line, fee_lines(), catalog_or_unmapped)
ratios = st.builds(RatioBp, employed=st.integers(0, 10_000), retired=st.integers(0, 10_000))


def ratio_tables(keys: list[str]) -> st.SearchStrategy[dict[str, RatioBp]]:
    """Half the time every level pays, half the time only some (or none) do."""
    return st.fixed_dictionaries(dict.fromkeys(keys, ratios)) | st.dictionaries(
        st.sampled_from(keys), ratios
    )


@st.composite
def policies(draw: st.DrawFn) -> PolicyParams:
    """A shipped policy, or a random one that PolicyBook would accept."""
    if draw(st.booleans()):
        return draw(st.sampled_from(SHIPPED))
    fen = st.integers(0, 500_000)
    inpatient_ratio = draw(ratio_tables(LEVELS))
    return PolicyParams(
        region="510100",
        insutype=draw(st.sampled_from(["310", "390"])),
        year=2026,
        version=1,
        name="random",
        fund_annual_cap_fen=draw(st.integers(0, 50_000_000)),
        personal_account=draw(st.booleans()),
        account_covers_self_pay=draw(st.booleans()),
        settle_by_id_number=draw(st.booleans()),
        outpatient=OutpatientPolicy(
            deductible_fen_employed=draw(fen),
            deductible_fen_retired=draw(fen),
            annual_limit_fen_employed=draw(fen),
            annual_limit_fen_retired=draw(fen),
            ratio_bp=draw(ratio_tables([*LEVELS, PHARMACY_KEY])),
            pharmacy_account_first=draw(st.booleans()),
        ),
        inpatient=InpatientPolicy(
            deductible_fen={lv: draw(fen) for lv in inpatient_ratio},
            ratio_bp=inpatient_ratio,
        ),
        cross_region=CrossRegionPolicy(
            ratio_factor_bp={
                "filed": draw(st.integers(0, 10_000)),
                "referral": draw(st.integers(0, 10_000)),
                "unfiled": draw(st.integers(0, 10_000)),
            }
        ),
    )


def person_for(draw: st.DrawFn, policy: PolicyParams) -> PersonFacts:
    return PersonFacts(
        insutype=policy.insutype,
        retired=draw(st.booleans()),
        acct_balance_fen=draw(st.integers(0, 10_000_000)),
    )


@dataclass(frozen=True)
class Case:
    lines: list[DetailSplit]
    person: PersonFacts
    acc: Accumulators
    policy: PolicyParams
    level: Level
    benefit: Benefit
    acct_used: bool
    factor_bp: int = 10_000  # the cross-region factor (10 000: a local settlement)

    def settle(self, lines: list[DetailSplit] | None = None) -> SettlementSplit:
        return adjudicate(
            self.lines if lines is None else lines,
            self.person,
            self.acc,
            self.policy,
            self.level,
            self.benefit,
            self.acct_used,
            self.factor_bp,
        )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    policy = draw(policies())
    out = policy.outpatient
    cap = policy.fund_annual_cap_fen
    limit = max(out.annual_limit_fen_employed, out.annual_limit_fen_retired)
    deductible = max(out.deductible_fen_employed, out.deductible_fen_retired)
    # Mostly fresh or within the limits; sometimes past them (carried over from a more
    # generous policy), which must pay nothing rather than go negative.
    outpatient_paid = draw(st.just(0) | st.integers(0, limit) | st.integers(0, 2 * limit + 1))
    return Case(
        lines=draw(st.lists(splits, min_size=1, max_size=8)),
        person=person_for(draw, policy),
        acc=Accumulators(
            year=2026,
            deductible_used_fen=draw(
                st.just(0) | st.integers(0, deductible) | st.integers(0, 2 * deductible + 1)
            ),
            outpatient_fund_paid_fen=outpatient_paid,
            fund_paid_fen=outpatient_paid
            + draw(st.just(0) | st.integers(0, cap) | st.integers(0, 2 * cap + 1)),
        ),
        policy=policy,
        level=draw(st.sampled_from(list(Level))),
        benefit=draw(st.sampled_from(list(Benefit))),
        acct_used=draw(st.booleans()),
        # A local settlement, or a cross-region one under one of the filing factors.
        factor_bp=draw(
            st.just(10_000) | st.sampled_from(list(policy.cross_region.ratio_factor_bp.values()))
        ),
    )


def limits(policy: PolicyParams, retired: bool) -> tuple[int, int]:
    """(annual outpatient deductible, annual outpatient limit) for the person."""
    out = policy.outpatient
    if retired:
        return out.deductible_fen_retired, out.annual_limit_fen_retired
    return out.deductible_fen_employed, out.annual_limit_fen_employed


@given(fee_lines(), catalog_or_unmapped)
@settings(max_examples=300, deadline=None)
def test_line_split_adds_up_and_is_never_negative(fee: FeeLine, item: CatalogItem | None) -> None:
    s = split_line(fee, item)
    parts = (s.fulamt_ownpay_amt_fen, s.overlmt_amt_fen, s.preselfpay_amt_fen, s.inscp_scp_amt_fen)
    assert sum(parts) == fee.det_item_fee_sumamt_fen
    assert min(parts) >= 0
    if item is None or item.chrgitm_lv is ItemClass.bing:
        assert s.fulamt_ownpay_amt_fen == fee.det_item_fee_sumamt_fen
    if item is None or item.price_ceiling_fen_per_unit is None:
        assert s.overlmt_amt_fen == 0
    if item is not None and item.chrgitm_lv is not ItemClass.yi:
        assert s.preselfpay_amt_fen == 0


@given(cases())
@settings(max_examples=300, deadline=None)
def test_settlement_identities_limits_and_balances(case: Case) -> None:
    """Every identity and limit holds, and cancelling gives the accumulators back."""
    s = case.settle()  # adjudicate checks §2.8 itself; check again from the outside
    check_identities(s)
    acc, policy, person, after = case.acc, case.policy, case.person, s.accumulators_after
    assert s.medfee_sumamt_fen == sum(d.det_item_fee_sumamt_fen for d in case.lines)
    assert s.inscp_scp_amt_fen == sum(d.inscp_scp_amt_fen for d in case.lines)
    assert s.hifp_pay_fen <= max(0, policy.fund_annual_cap_fen - acc.fund_paid_fen)
    assert s.act_pay_dedc_fen + s.hifp_pay_fen <= s.inscp_scp_amt_fen
    if case.benefit is Benefit.inpatient:
        assert s.act_pay_dedc_fen <= policy.inpatient.deductible_fen.get(case.level.value, 0)
        assert (after.deductible_used_fen, after.outpatient_fund_paid_fen) == (
            acc.deductible_used_fen,
            acc.outpatient_fund_paid_fen,
        )
    else:
        deductible, limit = limits(policy, person.retired)
        assert s.hifp_pay_fen <= max(0, limit - acc.outpatient_fund_paid_fen)
        assert s.act_pay_dedc_fen <= max(0, deductible - acc.deductible_used_fen)
    key = case.level.value if case.benefit is not Benefit.pharmacy else PHARMACY_KEY
    ratio_table = (
        policy.inpatient.ratio_bp
        if case.benefit is Benefit.inpatient
        else policy.outpatient.ratio_bp
    )
    if key not in ratio_table:
        assert (s.act_pay_dedc_fen, s.hifp_pay_fen) == (0, 0), "no pooling at this level"
    assert s.acct_pay_fen <= min(person.acct_balance_fen, s.psn_part_amt_fen)
    if not (policy.personal_account and case.acct_used):
        assert s.acct_pay_fen == 0
    elif not policy.account_covers_self_pay:
        self_paid = s.fulamt_ownpay_amt_fen + s.overlmt_selfpay_fen
        assert s.acct_pay_fen <= max(0, s.psn_part_amt_fen - self_paid)
    assert reverse_accumulators(after, s.taken, case.benefit) == acc


@given(cases(), st.lists(splits, min_size=1, max_size=3))
@settings(max_examples=150, deadline=None)
def test_more_in_scope_money_never_lowers_the_fund_payment(
    case: Case, extra: list[DetailSplit]
) -> None:
    assert case.settle([*case.lines, *extra]).hifp_pay_fen >= case.settle().hifp_pay_fen


steps = st.lists(
    st.tuples(
        st.lists(splits, min_size=1, max_size=4),
        st.sampled_from(list(Level)),
        st.sampled_from(list(Benefit)),
        st.booleans(),  # acct_used
        st.one_of(st.none(), st.integers(0, 30)),  # cancel the n-th live settlement
    ),
    min_size=1,
    max_size=20,
)


@given(policies(), st.booleans(), st.integers(0, 3_000_000), steps)
@settings(max_examples=100, deadline=None)
def test_a_year_of_settlements_and_cancellations_never_passes_a_limit(
    policy: PolicyParams,
    retired: bool,
    opening_fen: int,
    year: list[tuple[list[DetailSplit], Level, Benefit, bool, int | None]],
) -> None:
    """One person settles bills one after another (accumulators and balance carried
    over) and cancels some earlier ones; the counters never pass the deductible, the
    outpatient limit or the annual cap, the balance never goes negative, the ledger
    sums to zero and its account balance matches the carried one."""
    deductible, limit = limits(policy, retired)
    balance = opening_fen
    acc = Accumulators(
        year=2026, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0
    )
    live: list[tuple[SettlementSplit, Benefit, tuple[ledger.Posting, ...]]] = []
    books: dict[str, int] = {}

    def post(postings: tuple[ledger.Posting, ...]) -> None:
        for p in postings:
            books[p.account] = books.get(p.account, 0) + p.amount_fen

    post(ledger.opening_postings("510100", policy.insutype, "P1", balance))
    for lines, level, benefit, acct_used, cancel in year:
        person = PersonFacts(insutype=policy.insutype, retired=retired, acct_balance_fen=balance)
        s = adjudicate(lines, person, acc, policy, level, benefit, acct_used)
        entry = ledger.settlement_postings(
            insuplc="510100",
            insutype=policy.insutype,
            psn_no="P1",
            fixmedins_code="H51010000001",
            fund_fen=s.fund_pay_sumamt_fen,
            acct_fen=s.acct_pay_fen,
            cash_fen=s.psn_cash_pay_fen,
        )
        post(entry)
        balance, acc = s.balc_fen, s.accumulators_after
        live.append((s, benefit, entry))
        if cancel is not None:
            old, old_benefit, old_entry = live.pop(cancel % len(live))
            post(ledger.negated(old_entry))
            balance += old.acct_pay_fen
            acc = reverse_accumulators(acc, old.taken, old_benefit)
        assert sum(books.values()) == 0
        assert -books.get("acct:P1", 0) == balance >= 0
        assert acc.deductible_used_fen <= deductible
        assert acc.outpatient_fund_paid_fen <= limit
        assert acc.fund_paid_fen <= policy.fund_annual_cap_fen
        assert acc.fund_paid_fen == sum(x.hifp_pay_fen for x, _, _ in live)
