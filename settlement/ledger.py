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
    xdue:<insuplc>:<mdtrtarea>     what the insured region owes a treating region for
                                   the cross-region settlements of its insured (credit)
    xrecv:<mdtrtarea>:<insuplc>    what the treating region is owed for them (debit)

A settlement of fund F, personal account A and cash C posts
    fund +F, acct +A, oop +C, recv:<fixmedins>:<insuplc> -(F+A), cash -C
and, treated in another region (异地就医, DOMAIN.md §5.4), the institution is owed by its
own region's agency, which the insured region pays back through clearing:
    fund +F, acct +A, oop +C, xdue:<insuplc>:<mdtrtarea> -(F+A),
    xrecv:<mdtrtarea>:<insuplc> +(F+A), recv:<fixmedins>:<mdtrtarea> -(F+A), cash -C
— all of it one entry, written under the insured region (DESIGN.md §7). Each region's
books are its own accounts: the pair's xdue and xrecv always net out, and xrecv equals
the fund and account money of the pair's live settlements. A cancellation posts
exactly the negation.
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


def clearing_due_account(insuplc: str, mdtrtarea: str) -> str:
    return f"xdue:{insuplc}:{mdtrtarea}"


def clearing_receivable_account(mdtrtarea: str, insuplc: str) -> str:
    return f"xrecv:{mdtrtarea}:{insuplc}"


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
    mdtrtarea: str | None = None,
) -> tuple[Posting, ...]:
    """The settle entry; `mdtrtarea` the treating region (None or `insuplc`: local)."""
    if min(fund_fen, acct_fen, cash_fen) < 0:
        raise DomainInvariantViolation("settlement amounts must not be negative")
    owed = fund_fen + acct_fen
    if mdtrtarea is None or mdtrtarea == insuplc:
        clearing: tuple[Posting, ...] = ()
        institution_owed_by = insuplc
    else:
        clearing = (
            Posting(clearing_due_account(insuplc, mdtrtarea), -owed),
            Posting(clearing_receivable_account(mdtrtarea, insuplc), owed),
        )
        institution_owed_by = mdtrtarea
    return balanced(
        (
            Posting(fund_account(insuplc, insutype), fund_fen),
            Posting(personal_account(psn_no), acct_fen),
            Posting(out_of_pocket_account(insuplc), cash_fen),
            *clearing,
            Posting(receivable_account(fixmedins_code, institution_owed_by), -owed),
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
