"""2208 cancel and 2601 reversal decisions without a database: a settlement decided by
decide_settle, stored as the load would return it, and cancelled — the negation puts
every account, the balance and the accumulators back exactly; each refusal in its
documented order; and every branch of a reversal (tombstone, already reversed, reversed
after a 2208, person mismatch, reversed now)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from settlement.cancellation import (
    CancelDecision,
    CancelLoad,
    CancelRequest,
    Original,
    ReversalDecision,
    ReversalLoad,
    ReversalRequest,
    ReversalResult,
    SettlementRow,
    decide_cancel,
    decide_reversal,
)
from settlement.catalog import DetailSplit, ItemClass
from settlement.errors import DomainInvariantViolation
from settlement.lifecycle import SettlementState, VisitState
from settlement.outpatient import (
    AccumulatorsRow,
    Institution,
    SettleDecision,
    SettleLoad,
    SettleRequest,
    Visit,
    decide_settle,
)
from settlement.policy import Level, PolicyBook
from settlement.refusals import Refusal, Refused
from tests.unit.test_outpatient_decisions import person

NOW = dt.datetime(2026, 6, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
HERE = "H51010000001"
HOSPITAL = Institution(fixmedins_code=HERE, level=Level("3"), inst_type="hospital")
VISIT = Visit("M1", "P1", HERE, "310", "02", VisitState.registered)
BEFORE = AccumulatorsRow(2026, 20_000, 50_000, 90_000)


def settled() -> tuple[SettleDecision, SettlementRow, CancelLoad]:
    """A 2207 decided, then stored and loaded again for its cancellation."""
    details = [
        DetailSplit("F1", 30_000, 0, 0, 0, 30_000, 0, 0, ItemClass.jia, ""),
        DetailSplit("F2", 12_000, 2_000, 0, 0, 10_000, 0, 0, ItemClass.jia, ""),
    ]
    p = person(balance_fen=8_000)
    req = SettleRequest(
        mdtrt_id="M1",
        psn_no="P1",
        insutype="310",
        insuplc_admdvs="510100",
        mdtrtarea_admvs="510100",
        med_type="11",
        medfee_sumamt_fen=42_000,
        acct_used=True,
    )
    d = decide_settle(
        req, SettleLoad(VISIT, p, BEFORE, None, details, 7), PolicyBook(), HOSPITAL, NOW
    )
    assert not isinstance(d, Refused)
    s, after = d.split, d.accumulators_after
    row = SettlementRow(
        setl_id=d.setl_id or "",
        mdtrt_id="M1",
        psn_no="P1",
        fixmedins_code=HERE,
        insuplc_admdvs="510100",
        state=SettlementState.settled,
        year=2026,
        pharmacy=False,
        medfee_sumamt_fen=s.medfee_sumamt_fen,
        act_pay_dedc_fen=s.act_pay_dedc_fen,
        hifp_pay_fen=s.hifp_pay_fen,
        fund_pay_sumamt_fen=s.fund_pay_sumamt_fen,
        acct_pay_fen=s.acct_pay_fen,
        psn_cash_pay_fen=s.psn_cash_pay_fen,
        postings=list(d.postings),
    )
    load = CancelLoad(
        visit=VISIT,
        settlement=row,
        person=person(balance_fen=s.balc_fen),
        accumulators=AccumulatorsRow(
            after.year,
            after.deductible_used_fen,
            after.outpatient_fund_paid_fen,
            after.fund_paid_fen,
        ),
    )
    return d, row, load


def cancel_request(**change: str) -> CancelRequest:
    fields = {"setl_id": "", "mdtrt_id": "M1", "psn_no": "P1", "insuplc_admdvs": "510100"}
    fields.update(change)
    return CancelRequest(msgid="H1-cancel", **fields)


def test_cancellation_puts_everything_back_to_the_fen() -> None:
    settle, row, load = settled()
    d = decide_cancel(cancel_request(setl_id=row.setl_id), load, HERE)
    assert isinstance(d, CancelDecision)
    assert settle.split.acct_pay_fen > 0 and settle.split.hifp_pay_fen > 0  # a real example
    books: Counter[str] = Counter()
    for p in (*settle.postings, *d.postings):
        books[p.account] += p.amount_fen
    assert set(books.values()) == {0}, "the negation undoes every account exactly"
    assert (d.balance_before_fen, d.balance_after_fen) == (settle.split.balc_fen, 8_000)
    acc = d.accumulators_after
    assert (acc.deductible_used_fen, acc.outpatient_fund_paid_fen, acc.fund_paid_fen) == (
        BEFORE.deductible_used_fen,
        BEFORE.outpatient_fund_paid_fen,
        BEFORE.fund_paid_fen,
    )
    assert (d.state_before, d.state) == (SettlementState.settled, SettlementState.cancelled)
    assert (d.fund_fen, d.acct_fen, d.cash_fen) == (
        settle.split.fund_pay_sumamt_fen,
        settle.split.acct_pay_fen,
        settle.split.psn_cash_pay_fen,
    )
    assert d.msgid == "H1-cancel"


def _refusal(req: CancelRequest, load: CancelLoad, here: str = HERE) -> tuple[Refusal, str]:
    r = decide_cancel(req, load, here)
    assert isinstance(r, Refused)
    return r.reason, r.message.split(":")[0]


def test_cancel_refusals_in_order() -> None:
    _, row, load = settled()
    ok = cancel_request(setl_id=row.setl_id)
    gone = CancelLoad(None, None, None, None)
    assert _refusal(ok, gone) == (Refusal.visit_not_found, "input.data.mdtrt_id")
    assert _refusal(ok, load, "H51019999999") == (Refusal.visit_not_found, "input.data.mdtrt_id")
    no_settlement = CancelLoad(VISIT, None, None, None)
    assert _refusal(ok, no_settlement) == (Refusal.settlement_not_found, "input.data.setl_id")
    wrong_visit = cancel_request(setl_id=row.setl_id, mdtrt_id="M2")
    assert _refusal(wrong_visit, load)[0] is Refusal.settlement_visit_mismatch
    wrong_person = cancel_request(setl_id=row.setl_id, psn_no="P2")
    assert _refusal(wrong_person, load)[0] is Refusal.settlement_visit_mismatch
    cancelled = CancelLoad(
        VISIT,
        SettlementRow(**{**_fields(row), "state": SettlementState.cancelled}),
        load.person,
        load.accumulators,
    )
    assert _refusal(ok, cancelled) == (Refusal.settlement_already_cancelled, "input.data.setl_id")
    elsewhere = cancel_request(setl_id=row.setl_id, insuplc_admdvs="510200")
    assert _refusal(elsewhere, load) == (Refusal.person_region_mismatch, "insuplc_admdvs")


def _fields(row: SettlementRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__struct_fields__}


def test_a_settlement_without_its_accumulators_is_a_bug_not_a_refusal() -> None:
    _, row, load = settled()
    broken = CancelLoad(load.visit, load.settlement, load.person, None)
    with pytest.raises(DomainInvariantViolation):
        decide_cancel(cancel_request(setl_id=row.setl_id), broken, HERE)


# -- 2601 -------------------------------------------------------------------------------

REV = ReversalRequest(
    omsgid="H1-orig", oinfno="2207", psn_no="P1", insuplc_admdvs="510100", msgid="H1-rev"
)
SETTLED_ORIGINAL = Original("2207", False, None)


def test_reversal_of_a_msgid_never_seen_leaves_a_tombstone() -> None:
    d = decide_reversal(REV, ReversalLoad(None, None), HERE)
    assert d == ReversalDecision(result=ReversalResult.tombstoned, tombstone=True)


def test_reversal_of_a_settlement_cancels_it_and_marks_the_original() -> None:
    _, row, load = settled()
    d = decide_reversal(REV, ReversalLoad(SETTLED_ORIGINAL, load), HERE)
    assert isinstance(d, ReversalDecision)
    assert (d.result, d.setl_id, d.mark_reversed, d.tombstone) == (
        ReversalResult.reversed,
        row.setl_id,
        True,
        False,
    )
    assert d.cancel is not None and d.cancel.msgid == "H1-rev"
    assert d.cancel == decide_cancel(
        CancelRequest(
            setl_id=row.setl_id, mdtrt_id="M1", psn_no="P1", insuplc_admdvs="510100", msgid="H1-rev"
        ),
        load,
        HERE,
    )


@pytest.mark.parametrize(
    "original", [Original("2207", True, "H1-rev0"), Original("2207", False, "H1-rev0")]
)
def test_reversing_again_answers_already_reversed_and_changes_nothing(original: Original) -> None:
    _, row, load = settled()
    d = decide_reversal(REV, ReversalLoad(original, load), HERE)
    assert d == ReversalDecision(result=ReversalResult.already_reversed, setl_id=row.setl_id)
    tomb = decide_reversal(REV, ReversalLoad(Original("2207", True, "H1-rev0"), None), HERE)
    assert tomb == ReversalDecision(result=ReversalResult.already_reversed, setl_id=None)


def test_reversal_after_a_2208_marks_the_original_and_moves_no_money() -> None:
    _, row, load = settled()
    cancelled = CancelLoad(
        load.visit,
        SettlementRow(**{**_fields(row), "state": SettlementState.cancelled}),
        load.person,
        load.accumulators,
    )
    d = decide_reversal(REV, ReversalLoad(SETTLED_ORIGINAL, cancelled), HERE)
    assert d == ReversalDecision(
        result=ReversalResult.already_reversed, setl_id=row.setl_id, mark_reversed=True
    )


def test_reversal_refusals() -> None:
    _, _, load = settled()
    r = decide_reversal(REV, ReversalLoad(Original("2204", False, None), load), HERE)
    assert isinstance(r, Refused) and r.reason is Refusal.field_invalid
    assert r.message.startswith("input.data.oinfno: H1-orig was a 2204")
    other = ReversalRequest(
        omsgid="H1-orig", oinfno="2207", psn_no="P9", insuplc_admdvs="510100", msgid="H1-rev"
    )
    r = decide_reversal(other, ReversalLoad(SETTLED_ORIGINAL, load), HERE)
    assert isinstance(r, Refused) and r.reason is Refusal.reversal_person_mismatch
    with pytest.raises(DomainInvariantViolation, match="has no settlement"):
        decide_reversal(REV, ReversalLoad(SETTLED_ORIGINAL, None), HERE)
