"""Ledger postings are balanced by construction and a cancellation is the exact
negation of its settlement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from settlement import ledger
from settlement.errors import DomainInvariantViolation

amounts = st.integers(min_value=0, max_value=10**12)


@given(amounts, amounts, amounts)
def test_settlement_entry_balances_and_its_negation_undoes_it(
    fund: int, acct: int, cash: int
) -> None:
    postings = ledger.settlement_postings(
        insuplc="510100",
        insutype="310",
        psn_no="P1",
        fixmedins_code="H51010000001",
        fund_fen=fund,
        acct_fen=acct,
        cash_fen=cash,
    )
    assert sum(p.amount_fen for p in postings) == 0
    assert all(p.amount_fen != 0 for p in postings)
    undo = ledger.negated(postings)
    totals: dict[str, int] = {}
    for p in (*postings, *undo):
        totals[p.account] = totals.get(p.account, 0) + p.amount_fen
    assert set(totals.values()) <= {0}


def test_settlement_entry_accounts() -> None:
    postings = ledger.settlement_postings(
        insuplc="510100",
        insutype="310",
        psn_no="P1",
        fixmedins_code="H51010000001",
        fund_fen=654_00,
        acct_fen=1000_00,
        cash_fen=196_00,
    )
    assert {p.account: p.amount_fen for p in postings} == {
        "fund:510100:310": 654_00,
        "acct:P1": 1000_00,
        "oop:510100": 196_00,
        "recv:H51010000001:510100": -1654_00,
        "cash:H51010000001": -196_00,
    }


def test_unbalanced_or_negative_entries_are_invariant_violations() -> None:
    with pytest.raises(DomainInvariantViolation, match="does not balance"):
        ledger.balanced([ledger.Posting("fund:510100:310", 1)])
    with pytest.raises(DomainInvariantViolation):
        ledger.settlement_postings(
            insuplc="510100",
            insutype="310",
            psn_no="P1",
            fixmedins_code="H51010000001",
            fund_fen=-1,
            acct_fen=0,
            cash_fen=0,
        )


def test_opening_entry_funds_the_personal_account_from_contributions() -> None:
    postings = ledger.opening_postings("510100", "310", "P1", 500_00)
    assert {p.account: p.amount_fen for p in postings} == {
        "contrib:510100:310": 500_00,
        "acct:P1": -500_00,
    }
