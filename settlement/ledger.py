"""Double-entry postings for settlements, cancellations and opening balances (pure).

Sign convention: debit positive, credit negative; the postings of one entry sum to
zero, checked here (`balanced`) and again by a deferred trigger in the database.

Accounts (text codes, DESIGN.md §6):

    fund:<insuplc>:<insutype>      pooled fund of the insured region and scheme
    acct:<psn_no>                  a person's personal account (credit-normal: its
                                   balance is minus the money available)
    recv:<fixmedins>:<insuplc>     owed to the institution by the insured region
    cash:<fixmedins>               cash the institution collected from patients
    oop:<insuplc>                  patients' own money (out of pocket)
    contrib:<insuplc>:<insutype>   contributions that fund personal accounts

A settlement of fund F, personal account A and cash C posts
    fund +F, acct +A, oop +C, recv -(F+A), cash -C
and its cancellation posts exactly the negation.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct

from settlement.errors import DomainInvariantViolation


class Posting(Struct, frozen=True):
    account: str
    amount_fen: int


def fund_account(insuplc: str, insutype: str) -> str:
    return f"fund:{insuplc}:{insutype}"


def personal_account(psn_no: str) -> str:
    return f"acct:{psn_no}"


def receivable_account(fixmedins_code: str, insuplc: str) -> str:
    return f"recv:{fixmedins_code}:{insuplc}"


def cash_account(fixmedins_code: str) -> str:
    return f"cash:{fixmedins_code}"


def out_of_pocket_account(insuplc: str) -> str:
    return f"oop:{insuplc}"


def contributions_account(insuplc: str, insutype: str) -> str:
    return f"contrib:{insuplc}:{insutype}"


def balanced(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """Drop zero postings and check the rest sums to zero."""
    kept = tuple(p for p in postings if p.amount_fen != 0)
    total = sum(p.amount_fen for p in kept)
    if total != 0:
        raise DomainInvariantViolation(f"journal entry does not balance: sum {total} fen")
    return kept


def settlement_postings(
    *,
    insuplc: str,
    insutype: str,
    psn_no: str,
    fixmedins_code: str,
    fund_fen: int,
    acct_fen: int,
    cash_fen: int,
) -> tuple[Posting, ...]:
    if min(fund_fen, acct_fen, cash_fen) < 0:
        raise DomainInvariantViolation("settlement amounts must not be negative")
    return balanced(
        (
            Posting(fund_account(insuplc, insutype), fund_fen),
            Posting(personal_account(psn_no), acct_fen),
            Posting(out_of_pocket_account(insuplc), cash_fen),
            Posting(receivable_account(fixmedins_code, insuplc), -(fund_fen + acct_fen)),
            Posting(cash_account(fixmedins_code), -cash_fen),
        )
    )


def negated(postings: Iterable[Posting]) -> tuple[Posting, ...]:
    """The postings that undo `postings` exactly (a cancellation or reversal)."""
    return balanced(Posting(p.account, -p.amount_fen) for p in postings)


def opening_postings(
    insuplc: str, insutype: str, psn_no: str, balance_fen: int
) -> tuple[Posting, ...]:
    """Fund a personal account with `balance_fen` from contributions."""
    if balance_fen < 0:
        raise DomainInvariantViolation("an opening balance must not be negative")
    return balanced(
        (
            Posting(contributions_account(insuplc, insutype), balance_fen),
            Posting(personal_account(psn_no), -balance_fen),
        )
    )
