"""2601 of a cancellation (2208, 2103) without a database: a 2207 decided by
decide_settle, cancelled by decide_cancel, and the cancellation reversed — the
settlement comes back to the fen (the settle entry's postings again, the balance and
the accumulators it left), each reason the cancellation stands in its documented order,
and the accumulator round trip as a Hypothesis property."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from settlement.adjudication import (
    Accumulators,
    Benefit,
    Taken,
    retake_accumulators,
    reverse_accumulators,
)
from settlement.cancellation import (
    CancelDecision,
    Limits,
    Original,
    ReinstateDecision,
    ReinstateLoad,
    ReversalDecision,
    ReversalLoad,
    ReversalRequest,
    ReversalResult,
    Unsettled,
    decide_cancel,
    decide_reversal,
)
from settlement.errors import DomainInvariantViolation
from settlement.lifecycle import SettlementState, VisitState
from settlement.outpatient import SettleDecision
from settlement.refusals import Refusal, Refused
from tests.unit.test_cancellation_decisions import HERE, VISIT, cancel_request, settled
from tests.unit.test_outpatient_decisions import person

REV = ReversalRequest(
    omsgid="H1-cancel", oinfno="2208", psn_no="P1", insuplc_admdvs="510100", msgid="H1-rev"
)
CANCEL_ORIGINAL = Original("2208", False, None)


def cancelled() -> tuple[SettleDecision, CancelDecision, ReinstateLoad]:
    """A 2207, its 2208 (msgid H1-cancel), and the reinstatement's load right after."""
    settle, row, load = settled()
    c = decide_cancel(cancel_request(setl_id=row.setl_id), load, HERE)
    assert isinstance(c, CancelDecision)
    acc, limits = c.accumulators_after, settle.open_limits
    return (
        settle,
        c,
        ReinstateLoad(
            visit=VISIT,
            settlement=replace(row, state=SettlementState.cancelled, cancel_msgid="H1-cancel"),
            person=person(balance_fen=c.balance_after_fen),
            limits=Limits(
                year=acc.year,
                deductible_used_fen=acc.deductible_used_fen,
                outpatient_fund_paid_fen=acc.outpatient_fund_paid_fen,
                fund_paid_fen=acc.fund_paid_fen,
                deductible_fen=limits.deductible_fen,
                outpatient_limit_fen=limits.outpatient_limit_fen,
                annual_cap_fen=limits.annual_cap_fen,
            ),
            live_setl_id=None,
            unsettled=Unsettled(count=2, fen=42_000, released_count=2, released_fen=42_000),
            settle_reversed=False,
        ),
    )


def reverse(load: ReinstateLoad, req: ReversalRequest = REV) -> Refused | ReversalDecision:
    return decide_reversal(req, ReversalLoad(CANCEL_ORIGINAL, reinstate=load), HERE)


def test_reversing_a_cancellation_puts_the_settlement_back_to_the_fen() -> None:
    settle, cancel, load = cancelled()
    d = reverse(load)
    assert isinstance(d, ReversalDecision)
    assert (d.result, d.setl_id, d.mark_reversed, d.tombstone, d.cancel) == (
        ReversalResult.reversed,
        settle.setl_id,
        True,
        False,
        None,
    )
    r = d.reinstate
    assert isinstance(r, ReinstateDecision)
    assert r.postings == settle.postings, "the settle entry's postings, posted again"
    books: Counter[str] = Counter()
    for p in (*settle.postings, *cancel.postings, *r.postings):
        books[p.account] += p.amount_fen
    assert books == Counter({p.account: p.amount_fen for p in settle.postings})
    # 80.00 in the account before the 2207; the 2207 took acct_pay from it, the 2208
    # gave it back (80.00 again), the reinstatement takes it again.
    assert (r.balance_before_fen, r.balance_after_fen) == (8_000, settle.split.balc_fen)
    assert r.accumulators_after == settle.accumulators_after
    assert (r.state_before, r.state) == (SettlementState.cancelled, SettlementState.settled)
    assert (r.msgid, r.cancel_msgid, r.detail_count, r.mdtrt_id) == ("H1-rev", "H1-cancel", 2, "M1")
    assert (r.fund_fen, r.acct_fen, r.cash_fen) == (
        settle.split.fund_pay_sumamt_fen,
        settle.split.acct_pay_fen,
        settle.split.psn_cash_pay_fen,
    )


def _stands(load: ReinstateLoad) -> str:
    r = reverse(load)
    assert isinstance(r, Refused) and r.reason is Refusal.reversal_cancellation_stands, r
    prefix = "input.data.omsgid: the cancellation of setl_id "
    assert r.message.startswith(prefix)
    return r.message.split(" stands: ", 1)[1]


def test_the_cancellation_stands_when_things_moved_on_in_this_order() -> None:
    settle, _, load = cancelled()
    lim = load.limits
    assert lim is not None
    acct = settle.split.acct_pay_fen
    # Everything wrong at once, then put right one reason at a time: the order is the
    # documented one (original reversed, visit, new settlement, details, account, limits).
    worst = replace(
        load,
        settle_reversed=True,
        visit=replace(VISIT, state=VisitState.cancelled),
        live_setl_id="S9",
        unsettled=Unsettled(count=3, fen=50_000, released_count=2, released_fen=42_000),
        person=person(balance_fen=acct - 1),
        limits=replace(lim, annual_cap_fen=lim.fund_paid_fen),
    )
    assert _stands(worst) == "its settlement's own request was reversed"
    worst = replace(worst, settle_reversed=False)
    assert _stands(worst) == "the visit M1 was unregistered since"
    worst = replace(worst, visit=VISIT)
    assert _stands(worst) == "the visit was settled again as setl_id S9"
    worst = replace(worst, live_setl_id=None)
    assert _stands(worst) == "the visit's fee details changed since (uploaded or withdrawn)"
    withdrawn = Unsettled(count=1, fen=30_000, released_count=1, released_fen=30_000)
    assert _stands(replace(worst, unsettled=withdrawn)).startswith("the visit's fee details")
    worst = replace(worst, unsettled=load.unsettled)
    assert _stands(worst) == (
        f"the personal account holds {acct / 100 - 0.01:.2f}, the settlement takes {acct / 100:.2f}"
    )
    worst = replace(worst, person=load.person)
    assert (
        _stands(worst)
        == f"the annual fund cap of 2026 would be passed ({lim.fund_paid_fen / 100:.2f})"
    )
    assert reverse(replace(worst, limits=lim)) == reverse(load)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("deductible_fen", "annual deductible"),
        ("outpatient_limit_fen", "outpatient fund limit"),
    ],
)
def test_each_limit_of_the_year_keeps_the_cancellation(field: str, text: str) -> None:
    _, _, load = cancelled()
    lim, row = load.limits, load.settlement
    assert lim is not None and row is not None and row.hifp_pay_fen > 0
    # The example's deductible was used up before its 2207: let this one have taken 5.00.
    took = replace(row, act_pay_dedc_fen=500 if field == "deductible_fen" else 0)
    used = {
        "deductible_fen": lim.deductible_used_fen,
        "outpatient_limit_fen": lim.outpatient_fund_paid_fen,
    }
    tight = replace(load, settlement=took, limits=replace(lim, **{field: used[field]}))
    assert _stands(tight).startswith(f"the {text} of 2026 would be passed")


def test_reversing_a_cancellation_again_or_of_another_person_changes_nothing() -> None:
    settle, _, load = cancelled()
    for original in (Original("2208", True, "H1-rev0"), Original("2208", False, "H1-rev0")):
        d = decide_reversal(REV, ReversalLoad(original, reinstate=load), HERE)
        assert d == ReversalDecision(result=ReversalResult.already_reversed, setl_id=settle.setl_id)
    other = replace(REV, psn_no="P9")
    r = reverse(load, other)
    assert isinstance(r, Refused) and r.reason is Refusal.reversal_person_mismatch
    assert r.message == "input.data.psn_no: H1-cancel cancelled another person's settlement"
    r = reverse(load, replace(REV, insuplc_admdvs="510700"))
    assert isinstance(r, Refused) and r.reason is Refusal.person_region_mismatch
    assert decide_reversal(
        replace(REV, oinfno="2207"), ReversalLoad(CANCEL_ORIGINAL), HERE
    ) == Refused(Refusal.field_invalid, "input.data.oinfno: H1-cancel was a 2208, not 2207")


def test_a_pharmacy_cancellation_is_reversed_the_same_way() -> None:
    settle, _, load = cancelled()
    assert load.settlement is not None
    pharmacy = replace(load, settlement=replace(load.settlement, pharmacy=True))
    req = replace(REV, oinfno="2103")
    d = decide_reversal(req, ReversalLoad(Original("2103", False, None), reinstate=pharmacy), HERE)
    assert isinstance(d, ReversalDecision) and d.reinstate is not None
    assert d.reinstate.postings == settle.postings


def test_a_committed_cancellation_without_its_settlement_is_a_bug() -> None:
    _, _, load = cancelled()
    with pytest.raises(DomainInvariantViolation, match="has no cancelled settlement"):
        decide_reversal(REV, ReversalLoad(CANCEL_ORIGINAL), HERE)
    assert load.settlement is not None
    live = replace(load, settlement=replace(load.settlement, state=SettlementState.settled))
    with pytest.raises(DomainInvariantViolation, match="not the cancellation in effect"):
        reverse(live)
    with pytest.raises(DomainInvariantViolation, match="without its visit or year"):
        reverse(replace(load, limits=None))


fen = st.integers(0, 10**9)


@given(
    used=st.tuples(fen, fen, fen),
    taken=st.tuples(fen, fen),
    benefit=st.sampled_from(list(Benefit)),
)
def test_retaking_is_the_inverse_of_reversing(
    used: tuple[int, int, int], taken: tuple[int, int], benefit: Benefit
) -> None:
    t = Taken(year=2026, act_pay_dedc_fen=taken[0], hifp_pay_fen=taken[1])
    acc = Accumulators(
        year=2026,
        deductible_used_fen=used[0],
        outpatient_fund_paid_fen=used[1],
        fund_paid_fen=used[2],
    )
    back = retake_accumulators(acc, t, benefit)
    assert reverse_accumulators(back, t, benefit) == acc
    assert back.fund_paid_fen == acc.fund_paid_fen + t.hifp_pay_fen
