"""The decisions that undo a settlement (DOMAIN.md §2.7, §2.9): 2208 cancels one by its
setl_id, 2601 reverses the request a msgid named — pure functions of what the engine
loaded under the locks of 2207's order (visit, settlement, person, accumulators).

A cancellation posts the exact negation of the settlement's entry, gives the account
money back and takes the settlement out of the year's accumulators with the domain's
own `reverse_accumulators`; the settlement moves settled → cancelled. A reversal is
idempotent from the institution's view: the first one undoes, every later one answers
`already_reversed`, and one that arrives before its original leaves a tombstone so the
late original is refused.

Reversing a cancellation (a 2208 or 2103 whose answer was lost) puts the settlement back
exactly as it was — the settle entry's postings again, the account charged and the
accumulators taken again, the freed fee details settled again — but only while nothing
moved on since: the visit still registered and not settled anew, its unsettled details
exactly the ones the cancel freed, the account holding the money, the year's deductible,
outpatient limit and annual cap not passed, and the settlement's own original not
reversed. Otherwise the answer is `reversal_cancellation_stands` and nothing changes.
"""

from __future__ import annotations

import enum

from msgspec import Struct

from settlement import ledger
from settlement.adjudication import (
    Accumulators,
    Benefit,
    Taken,
    retake_accumulators,
    reverse_accumulators,
)
from settlement.errors import DomainInvariantViolation
from settlement.lifecycle import SettlementState, VisitState, transition
from settlement.money import fen_to_yuan
from settlement.outpatient import AccumulatorsRow, Person, Visit
from settlement.refusals import Refusal, Refused


class SettlementRow(Struct, frozen=True, kw_only=True):
    """A stored settlement as a cancellation needs it, with its entry's postings."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    fixmedins_code: str
    insuplc_admdvs: str
    state: SettlementState
    year: int
    pharmacy: bool  # adjudicated under the pharmacy benefit (clr_type 41)
    medfee_sumamt_fen: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    postings: list[ledger.Posting]  # the settle entry's
    cancel_msgid: str | None = None  # the msgid of the cancellation in effect

    @property
    def taken(self) -> Taken:
        return Taken(
            year=self.year, act_pay_dedc_fen=self.act_pay_dedc_fen, hifp_pay_fen=self.hifp_pay_fen
        )

    @property
    def benefit(self) -> Benefit:
        return Benefit.pharmacy if self.pharmacy else Benefit.outpatient


class CancelRequest(Struct, frozen=True, kw_only=True):
    setl_id: str
    mdtrt_id: str
    psn_no: str
    insuplc_admdvs: str  # the envelope's
    msgid: str  # the cancelling request's: the cancel entry's reference
    pharmacy: bool = False  # 2103: only a pharmacy settlement (2208 cancels any)


class CancelLoad(Struct, frozen=True):
    visit: Visit | None
    settlement: SettlementRow | None
    person: Person | None  # the settlement's person
    accumulators: AccumulatorsRow | None  # of the settlement's year


class CancelDecision(Struct, frozen=True, kw_only=True):
    setl_id: str
    state_before: SettlementState
    state: SettlementState
    insuplc_admdvs: str
    msgid: str
    postings: tuple[ledger.Posting, ...]
    psn_no: str
    balance_before_fen: int
    balance_after_fen: int
    accumulators_after: Accumulators
    pharmacy: bool  # the settlement's benefit (clr_type 41), for the metrics
    # What moves back, for the answer and the metrics.
    fund_fen: int
    acct_fen: int
    cash_fen: int


def decide_cancel(
    req: CancelRequest, load: CancelLoad, fixmedins_code: str
) -> Refused | CancelDecision:
    visit = check_visit_here(load.visit, req.mdtrt_id, fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    st = load.settlement
    if st is None or st.fixmedins_code != fixmedins_code:
        return Refused(Refusal.settlement_not_found, f"input.data.setl_id: {req.setl_id} not found")
    if st.mdtrt_id != req.mdtrt_id or st.psn_no != req.psn_no:
        return Refused(
            Refusal.settlement_visit_mismatch,
            f"input.data.setl_id: {req.setl_id} does not belong to this visit and person",
        )
    if req.pharmacy and not st.pharmacy:
        return Refused(
            Refusal.settlement_not_found,
            f"input.data.setl_id: {req.setl_id} is not a pharmacy settlement (cancel it with 2208)",
        )
    if st.state is SettlementState.cancelled:
        return Refused(
            Refusal.settlement_already_cancelled,
            f"input.data.setl_id: {req.setl_id} was already cancelled",
        )
    person, row = load.person, load.accumulators
    if person is None or row is None:
        raise DomainInvariantViolation(f"settlement {st.setl_id} without its person's year")
    if (wrong_region := region_refusal(person, req.insuplc_admdvs, req.psn_no)) is not None:
        return wrong_region
    before = Accumulators(
        year=row.year,
        deductible_used_fen=row.deductible_used_fen,
        outpatient_fund_paid_fen=row.outpatient_fund_paid_fen,
        fund_paid_fen=row.fund_paid_fen,
    )
    return CancelDecision(
        setl_id=st.setl_id,
        state_before=st.state,
        state=transition(st.state, SettlementState.cancelled),
        insuplc_admdvs=st.insuplc_admdvs,
        msgid=req.msgid,
        postings=ledger.negated(st.postings),
        psn_no=st.psn_no,
        balance_before_fen=person.acct_balance_fen,
        balance_after_fen=person.acct_balance_fen + st.acct_pay_fen,
        accumulators_after=reverse_accumulators(before, st.taken, st.benefit),
        pharmacy=st.pharmacy,
        fund_fen=st.fund_pay_sumamt_fen,
        acct_fen=st.acct_pay_fen,
        cash_fen=st.psn_cash_pay_fen,
    )


def region_refusal(person: Person, insuplc_admdvs: str, psn_no: str) -> Refused | None:
    if person.insuplc_admdvs == insuplc_admdvs:
        return None
    return Refused(
        Refusal.person_region_mismatch,
        f"insuplc_admdvs: {insuplc_admdvs} is not the insured region of psn_no {psn_no}",
    )


def check_visit_here(visit: Visit | None, mdtrt_id: str, fixmedins_code: str) -> Refused | Visit:
    """The visit exists at this institution. Its state is not judged: a visit with a
    live settlement cannot have been unregistered (2202 refuses it)."""
    if visit is None or visit.fixmedins_code != fixmedins_code:
        return Refused(Refusal.visit_not_found, f"input.data.mdtrt_id: {mdtrt_id} not found")
    return visit


# -- 2601 reversal ----------------------------------------------------------------------


class ReversalRequest(Struct, frozen=True, kw_only=True):
    omsgid: str
    oinfno: str
    psn_no: str
    insuplc_admdvs: str
    msgid: str  # the reversal's own


class Original(Struct, frozen=True):
    """The original's row in the idempotency log (locked by the load)."""

    infno: str
    tombstone: bool
    reversed_by_msgid: str | None


class Limits(Struct, frozen=True, kw_only=True):
    """A year's accumulators with the limits its row was opened with."""

    year: int
    deductible_used_fen: int
    outpatient_fund_paid_fen: int
    fund_paid_fen: int
    deductible_fen: int
    outpatient_limit_fen: int
    annual_cap_fen: int

    @property
    def accumulators(self) -> Accumulators:
        return Accumulators(
            year=self.year,
            deductible_used_fen=self.deductible_used_fen,
            outpatient_fund_paid_fen=self.outpatient_fund_paid_fen,
            fund_paid_fen=self.fund_paid_fen,
        )


class Unsettled(Struct, frozen=True, kw_only=True):
    """The visit's unsettled fee details, and those of them a cancellation freed from
    the settlement being reinstated."""

    count: int
    fen: int
    released_count: int
    released_fen: int


class ReinstateLoad(Struct, frozen=True, kw_only=True):
    """A cancelled settlement and what has happened to its visit, person and year since,
    locked in 2207's order."""

    visit: Visit | None
    settlement: SettlementRow | None
    person: Person | None
    limits: Limits | None
    live_setl_id: str | None  # a settlement of the visit made since the cancel
    unsettled: Unsettled
    settle_reversed: bool | None  # the settlement's own original was reversed (2601)


class ReinstateDecision(Struct, frozen=True, kw_only=True):
    setl_id: str
    mdtrt_id: str
    cancel_msgid: str  # the cancellation undone
    state_before: SettlementState
    state: SettlementState
    insuplc_admdvs: str
    msgid: str
    postings: tuple[ledger.Posting, ...]  # the settle entry's, posted again
    psn_no: str
    balance_before_fen: int
    balance_after_fen: int
    accumulators_after: Accumulators
    detail_count: int  # the fee details settled again
    pharmacy: bool  # the settlement's benefit (clr_type 41), for the metrics
    # What moves again, for the metrics.
    fund_fen: int
    acct_fen: int
    cash_fen: int


class ReversalLoad(Struct, frozen=True):
    original: Original | None
    cancel: CancelLoad | None = None  # the settlement a 2207/2102 produced, locked
    reinstate: ReinstateLoad | None = None  # the settlement a 2208/2103 cancelled, locked


class ReversalResult(enum.StrEnum):
    reversed = "reversed"  # the original's effect was undone now
    already_reversed = "already_reversed"  # by an earlier 2601 (or a 2208)
    tombstoned = "tombstoned"  # the original never arrived; it is refused if it does


class ReversalDecision(Struct, frozen=True, kw_only=True):
    result: ReversalResult
    setl_id: str | None = None
    tombstone: bool = False  # leave a tombstone under omsgid
    mark_reversed: bool = False  # mark the original's msgid reversed by this one
    cancel: CancelDecision | None = None
    reinstate: ReinstateDecision | None = None


UNDOES_CANCEL = frozenset({"2208", "2103"})  # a reversal of these reinstates a settlement


def decide_reversal(
    req: ReversalRequest, load: ReversalLoad, fixmedins_code: str
) -> Refused | ReversalDecision:
    original = load.original
    if original is None:
        return ReversalDecision(result=ReversalResult.tombstoned, tombstone=True)
    if original.infno != req.oinfno:
        return Refused(
            Refusal.field_invalid,
            f"input.data.oinfno: {req.omsgid} was a {original.infno}, not {req.oinfno}",
        )
    if original.infno in UNDOES_CANCEL:
        return _reverse_cancellation(req, original, load.reinstate)
    st = load.cancel.settlement if load.cancel is not None else None
    if original.tombstone or original.reversed_by_msgid is not None:
        return ReversalDecision(
            result=ReversalResult.already_reversed, setl_id=st.setl_id if st else None
        )
    if st is None or load.cancel is None:
        raise DomainInvariantViolation(
            f"the committed {original.infno} {req.omsgid} has no settlement"
        )
    if st.psn_no != req.psn_no:
        return Refused(
            Refusal.reversal_person_mismatch,
            f"input.data.psn_no: {req.omsgid} settled another person",
        )
    if st.state is SettlementState.cancelled:  # by 2208 before this reversal
        return ReversalDecision(
            result=ReversalResult.already_reversed, setl_id=st.setl_id, mark_reversed=True
        )
    cancel = decide_cancel(
        CancelRequest(
            setl_id=st.setl_id,
            mdtrt_id=st.mdtrt_id,
            psn_no=req.psn_no,
            insuplc_admdvs=req.insuplc_admdvs,
            msgid=req.msgid,
        ),
        load.cancel,
        fixmedins_code,
    )
    if isinstance(cancel, Refused):
        return cancel
    return ReversalDecision(
        result=ReversalResult.reversed, setl_id=st.setl_id, mark_reversed=True, cancel=cancel
    )


def _reverse_cancellation(
    req: ReversalRequest, original: Original, load: ReinstateLoad | None
) -> Refused | ReversalDecision:
    st = load.settlement if load is not None else None
    if original.tombstone or original.reversed_by_msgid is not None:
        return ReversalDecision(
            result=ReversalResult.already_reversed, setl_id=st.setl_id if st else None
        )
    if load is None or st is None:
        raise DomainInvariantViolation(
            f"the committed {original.infno} {req.omsgid} has no cancelled settlement"
        )
    d = decide_reinstate(req, load, st)
    if isinstance(d, Refused):
        return d
    return ReversalDecision(
        result=ReversalResult.reversed, setl_id=st.setl_id, mark_reversed=True, reinstate=d
    )


def decide_reinstate(
    req: ReversalRequest, load: ReinstateLoad, st: SettlementRow
) -> Refused | ReinstateDecision:
    """Put back the settlement `st` that the cancellation `req.omsgid` took away, or
    refuse (`reversal_cancellation_stands`) when the visit, its details, the account or
    the year's limits moved on since."""
    if st.state is not SettlementState.cancelled or st.cancel_msgid != req.omsgid:
        raise DomainInvariantViolation(
            f"{req.omsgid} is not the cancellation in effect of {st.setl_id}"
        )
    if st.psn_no != req.psn_no:
        return Refused(
            Refusal.reversal_person_mismatch,
            f"input.data.psn_no: {req.omsgid} cancelled another person's settlement",
        )
    person, limits = load.person, load.limits
    if person is None or limits is None or load.visit is None:
        raise DomainInvariantViolation(f"settlement {st.setl_id} without its visit or year")
    if (wrong_region := region_refusal(person, req.insuplc_admdvs, req.psn_no)) is not None:
        return wrong_region
    after = retake_accumulators(limits.accumulators, st.taken, st.benefit)
    stands = _why_the_cancellation_stands(load, st, person, limits, after)
    if stands is not None:
        return Refused(
            Refusal.reversal_cancellation_stands,
            f"input.data.omsgid: the cancellation of setl_id {st.setl_id} stands: {stands}",
        )
    return ReinstateDecision(
        setl_id=st.setl_id,
        mdtrt_id=st.mdtrt_id,
        cancel_msgid=req.omsgid,
        state_before=st.state,
        state=transition(st.state, SettlementState.settled),
        insuplc_admdvs=st.insuplc_admdvs,
        msgid=req.msgid,
        postings=tuple(st.postings),
        psn_no=st.psn_no,
        balance_before_fen=person.acct_balance_fen,
        balance_after_fen=person.acct_balance_fen - st.acct_pay_fen,
        accumulators_after=after,
        detail_count=load.unsettled.released_count,
        pharmacy=st.pharmacy,
        fund_fen=st.fund_pay_sumamt_fen,
        acct_fen=st.acct_pay_fen,
        cash_fen=st.psn_cash_pay_fen,
    )


def _why_the_cancellation_stands(
    load: ReinstateLoad, st: SettlementRow, person: Person, limits: Limits, after: Accumulators
) -> str | None:
    """What moved on since the cancellation, in the order a desk would look, or None;
    `after`: the year's accumulators with the settlement taken in again."""
    visit, left = load.visit, load.unsettled
    if load.settle_reversed:
        return "its settlement's own request was reversed"
    if visit is None or visit.state is not VisitState.registered:
        return f"the visit {st.mdtrt_id} was unregistered since"
    if load.live_setl_id is not None:
        return f"the visit was settled again as setl_id {load.live_setl_id}"
    if left.count != left.released_count or left.released_fen != st.medfee_sumamt_fen:
        return "the visit's fee details changed since (uploaded or withdrawn)"
    if person.acct_balance_fen < st.acct_pay_fen:
        return (
            f"the personal account holds {fen_to_yuan(person.acct_balance_fen)},"
            f" the settlement takes {fen_to_yuan(st.acct_pay_fen)}"
        )
    for used, limit, what in (
        (after.deductible_used_fen, limits.deductible_fen, "annual deductible"),
        (after.outpatient_fund_paid_fen, limits.outpatient_limit_fen, "outpatient fund limit"),
        (after.fund_paid_fen, limits.annual_cap_fen, "annual fund cap"),
    ):
        if used > limit:
            return f"the {what} of {limits.year} would be passed ({fen_to_yuan(limit)})"
    return None
