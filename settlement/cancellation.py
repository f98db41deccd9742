"""The decisions that undo a settlement (DOMAIN.md §2.7, §2.9): 2208 cancels one by its
setl_id, 2601 reverses the request a msgid named — pure functions of what the engine
loaded under the locks of 2207's order (visit, settlement, person, accumulators).

A cancellation posts the exact negation of the settlement's entry, gives the account
money back and takes the settlement out of the year's accumulators with the domain's
own `reverse_accumulators`; the settlement moves settled → cancelled. A reversal is
idempotent from the institution's view: the first one undoes, every later one answers
`already_reversed`, and one that arrives before its original leaves a tombstone so the
late original is refused.
"""

from __future__ import annotations

import enum

from msgspec import Struct

from settlement import ledger
from settlement.adjudication import Accumulators, Benefit, Taken, reverse_accumulators
from settlement.errors import DomainInvariantViolation
from settlement.lifecycle import SettlementState, transition
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
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    fund_pay_sumamt_fen: int
    acct_pay_fen: int
    psn_cash_pay_fen: int
    postings: list[ledger.Posting]

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
    if person.insuplc_admdvs != req.insuplc_admdvs:
        return Refused(
            Refusal.person_region_mismatch,
            f"insuplc_admdvs: {req.insuplc_admdvs} is not the insured region of"
            f" psn_no {req.psn_no}",
        )
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
        fund_fen=st.fund_pay_sumamt_fen,
        acct_fen=st.acct_pay_fen,
        cash_fen=st.psn_cash_pay_fen,
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


class ReversalLoad(Struct, frozen=True):
    original: Original | None
    cancel: CancelLoad | None  # the settlement the original produced, locked


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
