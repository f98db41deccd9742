"""Properties over random bills, persons, accumulators and policies: every money
identity of DOMAIN.md §2.8 holds to the fen, nothing is negative, the fund never pays
past the outpatient limit or the annual cap, the account never past its balance, and
a sequence of settlements and cancellations keeps the ledger at zero."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import ledger
from settlement.adjudication import (
    Accumulators,
    Benefit,
    PersonFacts,
    adjudicate,
    reverse_accumulators,
)
from settlement.catalog import CatalogItem, FeeLine, ItemClass, line_amount_fen, split_line
from settlement.policy import Level, PolicyBook

BOOK = PolicyBook()

items = st.builds(
    CatalogItem,
    med_list_codg=st.just("X"),
    name=st.just("item"),
    chrgitm_lv=st.sampled_from(list(ItemClass)),
    list_type=st.just("101"),
    price_ceiling_fen_per_unit=st.one_of(st.none(), st.integers(1, 500_000)),
    selfpay_prop_bp=st.integers(0, 10_000),
).map(
    lambda i: (
        i
        if i.chrgitm_lv is ItemClass.yi
        else CatalogItem(
            i.med_list_codg, i.name, i.chrgitm_lv, i.list_type, i.price_ceiling_fen_per_unit, 0
        )
    )
)


@st.composite
def fee_lines(draw: st.DrawFn) -> FeeLine:
    cnt_e4 = draw(st.integers(1, 1_000_000))
    pric_e6 = draw(st.integers(0, 100_000_000_000))
    return FeeLine("1", "X", cnt_e4, pric_e6, line_amount_fen(cnt_e4, pric_e6))


splits = st.builds(split_line, fee_lines(), st.one_of(st.none(), items))


@st.composite
def cases(draw: st.DrawFn) -> tuple:  # type: ignore[type-arg]
    insutype = draw(st.sampled_from(["310", "390"]))
    policy = BOOK.get("510100", insutype, 2026)
    person = PersonFacts(
        insutype=insutype,  # type: ignore[arg-type]
        retired=draw(st.booleans()) and insutype == "310",
        acct_balance_fen=draw(st.integers(0, 10_000_000)) if insutype == "310" else 0,
    )
    limit = policy.outpatient.annual_limit_fen_employed
    acc = Accumulators(
        year=2026,
        deductible_used_fen=draw(st.integers(0, policy.outpatient.deductible_fen_retired)),
        outpatient_fund_paid_fen=draw(st.integers(0, limit)),
        fund_paid_fen=0,
    )
    acc = Accumulators(
        year=2026,
        deductible_used_fen=acc.deductible_used_fen,
        outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen,
        fund_paid_fen=draw(st.integers(acc.outpatient_fund_paid_fen, policy.fund_annual_cap_fen)),
    )
    return (
        draw(st.lists(splits, min_size=1, max_size=8)),
        person,
        acc,
        policy,
        draw(st.sampled_from(list(Level))),
        draw(st.sampled_from(list(Benefit))),
        draw(st.booleans()),
    )


@given(fee_lines(), st.one_of(st.none(), items))
@settings(max_examples=400, deadline=None)
def test_line_split_adds_up_and_is_never_negative(fee: FeeLine, item: CatalogItem | None) -> None:
    s = split_line(fee, item)
    parts = (s.fulamt_ownpay_amt_fen, s.overlmt_amt_fen, s.preselfpay_amt_fen, s.inscp_scp_amt_fen)
    assert sum(parts) == fee.det_item_fee_sumamt_fen
    assert min(parts) >= 0


@given(cases())
@settings(max_examples=400, deadline=None)
def test_settlement_identities_limits_and_balances(case: tuple) -> None:  # type: ignore[type-arg]
    lines, person, acc, policy, level, benefit, acct_used = case
    s = adjudicate(lines, person, acc, policy, level, benefit, acct_used)  # checks §2.8 itself
    assert s.medfee_sumamt_fen == sum(d.det_item_fee_sumamt_fen for d in lines)
    assert s.acct_pay_fen <= person.acct_balance_fen
    assert s.accumulators_after.fund_paid_fen <= max(policy.fund_annual_cap_fen, acc.fund_paid_fen)
    if benefit is not Benefit.inpatient:
        limit = (
            policy.outpatient.annual_limit_fen_retired
            if person.retired
            else policy.outpatient.annual_limit_fen_employed
        )
        assert s.accumulators_after.outpatient_fund_paid_fen <= max(
            limit, acc.outpatient_fund_paid_fen
        )
    assert reverse_accumulators(s.accumulators_after, s, benefit) == acc


@given(
    st.lists(
        st.tuples(st.lists(splits, min_size=1, max_size=4), st.booleans()), min_size=1, max_size=20
    )
)
@settings(max_examples=150, deadline=None)
def test_random_settle_and_cancel_sequences_keep_every_balance_summing_to_zero(
    steps: list[tuple[list, bool]],  # type: ignore[type-arg]
) -> None:
    """One employee settles bills one after another (accumulators and balance carried
    over) and cancels some; the sum of all account balances stays zero, the account
    balance in the ledger matches the carried balance and never goes negative."""
    policy = BOOK.get("510100", "310", 2026)
    balance = 300_000
    acc = Accumulators(
        year=2026, deductible_used_fen=0, outpatient_fund_paid_fen=0, fund_paid_fen=0
    )
    balances: dict[str, int] = {}

    def post(postings: tuple[ledger.Posting, ...]) -> None:
        for p in postings:
            balances[p.account] = balances.get(p.account, 0) + p.amount_fen

    post(ledger.opening_postings("510100", "310", "P1", balance))
    for lines, cancel in steps:
        person = PersonFacts(insutype="310", retired=False, acct_balance_fen=balance)
        s = adjudicate(lines, person, acc, policy, Level.level2, Benefit.outpatient, True)
        entry = ledger.settlement_postings(
            insuplc="510100",
            insutype="310",
            psn_no="P1",
            fixmedins_code="H51010000001",
            fund_fen=s.fund_pay_sumamt_fen,
            acct_fen=s.acct_pay_fen,
            cash_fen=s.psn_cash_pay_fen,
        )
        post(entry)
        balance, acc = s.balc_fen, s.accumulators_after
        if cancel:
            post(ledger.negated(entry))
            balance += s.acct_pay_fen
            acc = reverse_accumulators(acc, s, Benefit.outpatient)
        assert sum(balances.values()) == 0
        assert -balances["acct:P1"] == balance >= 0
        assert acc.outpatient_fund_paid_fen <= policy.outpatient.annual_limit_fen_employed
