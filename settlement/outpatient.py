"""The decisions of the outpatient flow (DOMAIN.md §2.5): register (2201), fee details
(2204), pre-settle and settle (2206/2207) — pure functions of what the engine loaded,
the policy and the engine's clock.

Each `decide_*` is one straight list of early returns: the order of its refusals is the
order of its `if`s. What it returns on success is everything the write needs — rows,
postings, accumulators after, state transitions — and the answer amounts; the engine
adds nothing but ids and encoding.
"""

from __future__ import annotations

import datetime as dt

from msgspec import Struct

from settlement import ledger
from settlement.adjudication import Accumulators, Benefit, PersonFacts, SettlementSplit, adjudicate
from settlement.catalog import CatalogItem, DetailSplit, FeeLine, line_amount_fen, split_line
from settlement.lifecycle import SettlementState, VisitState, transition
from settlement.money import BP_ONE, fen_to_yuan
from settlement.policy import Filing, Level, PolicyBook, PolicyNotFound, PolicyParams
from settlement.proofs import CardProof, Credential, Presented, proof_refusal
from settlement.refusals import Refusal, Refused

PHARMACY_MED_TYPES = frozenset({"41"})


class Person(Struct, frozen=True):
    """An insured person as the outpatient flows see them."""

    psn_no: str
    insuplc_admdvs: str
    psn_cert_type: str
    certno: str
    psn_name: str
    gend: str
    naty: str
    brdy: dt.date
    insutype: str
    retired: bool
    psn_insu_stas: str
    cvlserv_flag: str
    acct_balance_fen: int


class Visit(Struct, frozen=True):
    mdtrt_id: str
    psn_no: str
    fixmedins_code: str
    insutype: str
    mdtrt_cert_type: str
    state: VisitState
    ipt_otp_no: str = ""


class Institution(Struct, frozen=True):
    """The treating institution (the request's terminal's)."""

    fixmedins_code: str
    level: Level
    inst_type: str


def check_person(
    person: Person | None, psn_no: str, insuplc_admdvs: str, insutype: str, field: str
) -> Refused | Person:
    if person is None:
        return Refused(Refusal.person_not_found, f"{field}.psn_no: {psn_no} not found")
    if person.insuplc_admdvs != insuplc_admdvs:
        return Refused(
            Refusal.person_region_mismatch,
            f"insuplc_admdvs: {insuplc_admdvs} is not the insured region of psn_no {psn_no}",
        )
    if person.insutype != insutype:
        return Refused(
            Refusal.insutype_not_held,
            f"{field}.insutype: person is insured under {person.insutype}, not {insutype}",
        )
    return person


def check_visit(
    visit: Visit | None, mdtrt_id: str, psn_no: str, fixmedins_code: str
) -> Refused | Visit:
    """The visit exists at this institution, belongs to this person and is open."""
    if visit is None or visit.fixmedins_code != fixmedins_code:
        return Refused(Refusal.visit_not_found, f"mdtrt_id: {mdtrt_id} not found")
    if visit.psn_no != psn_no:
        return Refused(
            Refusal.visit_person_mismatch, f"psn_no: {psn_no} is not the patient of {mdtrt_id}"
        )
    if visit.state is not VisitState.registered:
        return Refused(Refusal.visit_cancelled, f"mdtrt_id: {mdtrt_id} registration was cancelled")
    return visit


# -- 2201 register --------------------------------------------------------------------------


class RegisterRequest(Struct, frozen=True, kw_only=True):
    psn_no: str
    insutype: str
    insuplc_admdvs: str  # the envelope's: the insured region the HIS names
    mdtrtarea_admvs: str
    ipt_otp_no: str
    presented: Presented  # the patient's credential and its card proof


class RegisterLoad(Struct, frozen=True):
    person: Person | None
    number_taken: bool
    visit_seq: int
    proof: CardProof | None = None  # the presented cred_ref's, when sent and found


class RegisterDecision(Struct, frozen=True):
    mdtrt_id: str
    state: VisitState


def credential_check(
    presented: Presented,
    proof: CardProof | None,
    person: Person,
    insutype: str,
    policies: PolicyBook,
    now: dt.datetime,
) -> Refused | None:
    """The patient's credential may carry this money transaction (settlement/proofs.py);
    whether an ID number may is the insured region's policy for the year."""
    allowed = True
    if presented.credential is Credential.certno:
        try:
            allowed = policies.get(person.insuplc_admdvs, insutype, now.year).settle_by_id_number
        except PolicyNotFound as exc:
            return Refused(Refusal.policy_not_found, f"insuplc_admdvs: {exc}")
    return proof_refusal(presented, proof, now, id_number_allowed=allowed)


def decide_register(
    req: RegisterRequest, load: RegisterLoad, policies: PolicyBook, now: dt.datetime
) -> Refused | RegisterDecision:
    person = check_person(load.person, req.psn_no, req.insuplc_admdvs, req.insutype, "input.data")
    if isinstance(person, Refused):
        return person
    bad_credential = credential_check(
        req.presented, load.proof, person, req.insutype, policies, now
    )
    if bad_credential is not None:
        return bad_credential
    if person.psn_insu_stas != "1":
        return Refused(Refusal.person_not_insured, "input.data.psn_no: insurance is not active")
    if load.number_taken:
        return Refused(
            Refusal.visit_outpatient_number_duplicate,
            f"input.data.ipt_otp_no: {req.ipt_otp_no} already has an open visit",
        )
    mdtrt_id = f"{req.mdtrtarea_admvs}{now:%Y%m%d}{load.visit_seq:012d}"
    return RegisterDecision(mdtrt_id=mdtrt_id, state=VisitState.registered)


# -- 2204 fee details -----------------------------------------------------------------------


class FeesRequest(Struct, frozen=True):
    mdtrt_id: str
    psn_no: str
    lines: list[FeeLine]


class FeesLoad(Struct, frozen=True):
    visit: Visit | None
    taken: list[str]  # feedetl_sn of this upload that the visit already has
    catalog: list[CatalogItem]


class FeesDecision(Struct, frozen=True):
    splits: list[DetailSplit]  # in the order of the request's lines


def amount_refusal(lines: list[FeeLine], field: str) -> Refused | None:
    """Every line's amount is its price × quantity, rounded half-up to the fen (2204's
    `input.feedetail`, 2101/2102's `input.drugdetail`)."""
    for i, line in enumerate(lines):
        if line_amount_fen(line.cnt_e4, line.pric_e6) != line.det_item_fee_sumamt_fen:
            return Refused(
                Refusal.fee_detail_amount_mismatch,
                f"{field}[{i}].det_item_fee_sumamt: {fen_to_yuan(line.det_item_fee_sumamt_fen)}"
                " is not pric × cnt rounded to the fen",
            )
    return None


def decide_fees(req: FeesRequest, load: FeesLoad, fixmedins_code: str) -> Refused | FeesDecision:
    bad_amount = amount_refusal(req.lines, "input.feedetail")
    if bad_amount is not None:
        return bad_amount
    visit = check_visit(load.visit, req.mdtrt_id, req.psn_no, fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    if load.taken:
        return Refused(
            Refusal.fee_detail_duplicate,
            f"input.feedetail.feedetl_sn: {load.taken[0]} was uploaded before",
        )
    catalog = {c.med_list_codg: c for c in load.catalog}
    return FeesDecision([split_line(line, catalog.get(line.med_list_codg)) for line in req.lines])


# -- 2203 visit info, 2205 cancel details, 2202 unregister ---------------------------------


class VisitRequest(Struct, frozen=True, kw_only=True):
    mdtrt_id: str
    psn_no: str
    chrg_bchno: str = ""  # 2205: the batch ("" with every_batch)
    every_batch: bool = False
    ipt_otp_no: str = ""  # 2202: the outpatient number the HIS names


class VisitLoad(Struct, frozen=True):
    visit: Visit | None
    live_setl_id: str | None
    unsettled_in_batch: int


class VisitDecision(Struct, frozen=True):
    state: VisitState  # the visit's state after the write


def decide_visit_info(
    req: VisitRequest, load: VisitLoad, fixmedins_code: str
) -> Refused | VisitDecision:
    visit = check_visit(load.visit, req.mdtrt_id, req.psn_no, fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    return VisitDecision(visit.state)


def decide_fees_cancel(
    req: VisitRequest, load: VisitLoad, fixmedins_code: str
) -> Refused | VisitDecision:
    visit = check_visit(load.visit, req.mdtrt_id, req.psn_no, fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    if load.unsettled_in_batch == 0:
        return Refused(
            Refusal.fee_details_batch_not_found,
            f"input.data.chrg_bchno: no unsettled details in {req.chrg_bchno}",
        )
    return VisitDecision(visit.state)


def decide_unregister(
    req: VisitRequest, load: VisitLoad, fixmedins_code: str
) -> Refused | VisitDecision:
    visit = check_visit(load.visit, req.mdtrt_id, req.psn_no, fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    if visit.ipt_otp_no != req.ipt_otp_no:
        return Refused(
            Refusal.field_invalid,
            f"input.data.ipt_otp_no: {req.ipt_otp_no} is not the number of {req.mdtrt_id}",
        )
    if load.live_setl_id is not None:
        return Refused(
            Refusal.visit_has_settlement,
            f"input.data.mdtrt_id: settlement {load.live_setl_id} must be cancelled first (2208)",
        )
    return VisitDecision(transition(visit.state, VisitState.cancelled))


# -- 2206 pre-settle / 2207 settle ----------------------------------------------------------


class SettleRequest(Struct, frozen=True, kw_only=True):
    mdtrt_id: str
    psn_no: str
    insutype: str
    insuplc_admdvs: str
    mdtrtarea_admvs: str  # the treating region: the institution's (checked at the edge)
    med_type: str
    medfee_sumamt_fen: int
    acct_used: bool
    # Optional HIS-side totals (2207) that, when sent, must agree with the split.
    his_totals_fen: dict[str, int] = {}
    chrg_bchno: str = ""  # settle only this charge batch ("": every unsettled detail)
    # 2207: the patient's credential and its card proof (2206 posts nothing: None).
    presented: Presented | None = None


class AccumulatorsRow(Struct, frozen=True):
    year: int
    deductible_used_fen: int
    outpatient_fund_paid_fen: int
    fund_paid_fen: int


class SettleLoad(Struct, frozen=True):
    visit: Visit | None
    person: Person | None
    accumulators: AccumulatorsRow | None
    live_setl_id: str | None
    details: list[DetailSplit]
    setl_seq: int | None  # 2207 only
    proof: CardProof | None = None  # the presented cred_ref's, when sent and found
    filing: Filing | None = None  # for the treating region; None: a local settlement


class OpenLimits(Struct, frozen=True):
    """The limits a year's accumulator row is opened with (its first settlement)."""

    deductible_fen: int
    outpatient_limit_fen: int
    annual_cap_fen: int


class SettleDecision(Struct, frozen=True, kw_only=True):
    split: SettlementSplit
    benefit: Benefit
    policy: PolicyParams
    setl_id: str | None  # None for a pre-settlement
    state: SettlementState
    postings: tuple[ledger.Posting, ...]
    accumulators_after: Accumulators
    open_limits: OpenLimits
    feedetl_sns: list[str]
    mdtrtarea_admvs: str  # the treating region: the clearing agency of the answer
    filing: Filing | None = None  # cross-region: the person's status there


# (wire name, split attribute) of the HIS totals a 2207 may carry.
HIS_TOTALS = (
    ("fulamt_ownpay_amt", "fulamt_ownpay_amt_fen"),
    ("overlmt_selfpay", "overlmt_selfpay_fen"),
    ("preselfpay_amt", "preselfpay_amt_fen"),
    ("inscp_scp_amt", "inscp_scp_amt_fen"),
)


def open_limits(policy: PolicyParams, retired: bool) -> OpenLimits:
    out = policy.outpatient
    return OpenLimits(
        deductible_fen=out.deductible_fen_retired if retired else out.deductible_fen_employed,
        outpatient_limit_fen=(
            out.annual_limit_fen_retired if retired else out.annual_limit_fen_employed
        ),
        annual_cap_fen=policy.fund_annual_cap_fen,
    )


def _settle_parties(
    req: SettleRequest,
    load: SettleLoad,
    policies: PolicyBook,
    inst: Institution,
    now: dt.datetime,
) -> Refused | Person:
    """The first refusals of a settlement: the visit is this person's here, the person
    is insured where the HIS says, their credential may carry it (2207), and the visit's
    scheme is the one asked for."""
    visit = check_visit(load.visit, req.mdtrt_id, req.psn_no, inst.fixmedins_code)
    if isinstance(visit, Refused):
        return visit
    person = load.person
    if person is None:
        return Refused(Refusal.person_not_found, f"input.data.psn_no: {req.psn_no} not found")
    if person.insuplc_admdvs != req.insuplc_admdvs:
        return Refused(
            Refusal.person_region_mismatch,
            f"insuplc_admdvs: {req.insuplc_admdvs} is not the insured region of"
            f" psn_no {req.psn_no}",
        )
    if req.presented is not None:
        bad_credential = credential_check(
            req.presented, load.proof, person, req.insutype, policies, now
        )
        if bad_credential is not None:
            return bad_credential
    if req.insutype != visit.insutype:
        return Refused(
            Refusal.insutype_not_held,
            f"input.data.insutype: the visit is under {visit.insutype}, not {req.insutype}",
        )
    return person


def decide_settle(
    req: SettleRequest,
    load: SettleLoad,
    policies: PolicyBook,
    inst: Institution,
    now: dt.datetime,
) -> Refused | SettleDecision:
    """2206 (load.setl_seq None: nothing is posted) and 2207."""
    parties = _settle_parties(req, load, policies, inst, now)
    if isinstance(parties, Refused):
        return parties
    person = parties
    if load.live_setl_id is not None:
        return Refused(
            Refusal.visit_already_settled,
            f"input.data.mdtrt_id: already settled as {load.live_setl_id}",
        )
    if not load.details:
        return Refused(
            Refusal.fee_details_none_unsettled, "input.data.mdtrt_id: no unsettled fee details"
        )
    benefit = (
        Benefit.pharmacy
        if inst.inst_type == "pharmacy" or req.med_type in PHARMACY_MED_TYPES
        else Benefit.outpatient
    )
    return price_settlement(
        Priced(
            details=load.details,
            medfee_sumamt_fen=req.medfee_sumamt_fen,
            acct_used=req.acct_used,
            his_totals_fen=req.his_totals_fen,
            benefit=benefit,
            field="input.data",
            what="the uploaded details' total",
            mdtrtarea_admvs=req.mdtrtarea_admvs,
            filing=load.filing,
        ),
        person,
        load.accumulators,
        load.setl_seq,
        policies,
        inst,
        now,
    )


def year_accumulators(row: AccumulatorsRow | None, year: int) -> Accumulators:
    """The person's totals for `year` (all zero before its first settlement)."""
    return Accumulators(
        year=year,
        deductible_used_fen=row.deductible_used_fen if row else 0,
        outpatient_fund_paid_fen=row.outpatient_fund_paid_fen if row else 0,
        fund_paid_fen=row.fund_paid_fen if row else 0,
    )


def person_facts(person: Person) -> PersonFacts:
    return PersonFacts(
        insutype="310" if person.insutype == "310" else "390",
        retired=person.retired,
        acct_balance_fen=person.acct_balance_fen,
    )


class Priced(Struct, frozen=True, kw_only=True):
    """What a settlement prices: the split lines, and what the request says of them."""

    details: list[DetailSplit]
    medfee_sumamt_fen: int
    acct_used: bool
    his_totals_fen: dict[str, int]
    benefit: Benefit
    field: str  # where medfee_sumamt is in the request: "input.data", "input.druginfo"
    what: str  # what the lines are, for the total's refusal
    mdtrtarea_admvs: str  # the treating region
    filing: Filing | None  # the person's filing there; None: treated at home


def his_totals_refusal(priced: Priced, split: SettlementSplit) -> Refused | None:
    """The HIS's own totals, where it sent them, must be the engine's split's."""
    for wire_name, split_name in HIS_TOTALS:
        sent = priced.his_totals_fen.get(wire_name)
        if sent is not None and sent != getattr(split, split_name):
            return Refused(
                Refusal.medfee_sumamt_mismatch,
                f"{priced.field}.{wire_name}: {fen_to_yuan(sent)} differs from the engine's split",
            )
    return None


def _split(
    priced: Priced,
    person: Person,
    row: AccumulatorsRow | None,
    policy: PolicyParams,
    level: Level,
    year: int,
) -> SettlementSplit:
    factor = BP_ONE if priced.filing is None else policy.cross_region.factor_bp(priced.filing)
    facts, acc = person_facts(person), year_accumulators(row, year)
    return adjudicate(
        priced.details, facts, acc, policy, level, priced.benefit, priced.acct_used, factor
    )


def price_settlement(
    priced: Priced,
    person: Person,
    row: AccumulatorsRow | None,
    setl_seq: int | None,
    policies: PolicyBook,
    inst: Institution,
    now: dt.datetime,
) -> Refused | SettleDecision:
    """The money of a settlement whose parties were checked (2206/2207, 2101/2102): the
    request's total against the lines', the insured region's policy, the split
    (DOMAIN.md §4.3-4.4; treated in another region, §4.7: the policy's ratios times the
    factor of the person's filing there), the HIS's own totals against it, and the
    postings (cross-region: through the pair's clearing accounts)."""
    total_fen = sum(d.det_item_fee_sumamt_fen for d in priced.details)
    if total_fen != priced.medfee_sumamt_fen:
        return Refused(
            Refusal.medfee_sumamt_mismatch,
            f"{priced.field}.medfee_sumamt: {fen_to_yuan(priced.medfee_sumamt_fen)} differs"
            f" from {priced.what} {fen_to_yuan(total_fen)}",
        )
    try:
        policy = policies.get(person.insuplc_admdvs, person.insutype, now.year)
    except PolicyNotFound as exc:
        return Refused(Refusal.policy_not_found, f"insuplc_admdvs: {exc}")
    split = _split(priced, person, row, policy, inst.level, now.year)
    disagreement = his_totals_refusal(priced, split)
    if disagreement is not None:
        return disagreement
    setl_id = None
    if setl_seq is not None:
        setl_id = f"{person.insuplc_admdvs}{now:%Y%m%d}{setl_seq:012d}"
    return SettleDecision(
        split=split,
        benefit=priced.benefit,
        policy=policy,
        setl_id=setl_id,
        state=SettlementState.settled,
        postings=ledger.settlement_postings(
            insuplc=person.insuplc_admdvs,
            insutype=person.insutype,
            psn_no=person.psn_no,
            fixmedins_code=inst.fixmedins_code,
            fund_fen=split.fund_pay_sumamt_fen,
            acct_fen=split.acct_pay_fen,
            cash_fen=split.psn_cash_pay_fen,
            mdtrtarea=priced.mdtrtarea_admvs,
        ),
        accumulators_after=split.accumulators_after,
        open_limits=open_limits(policy, person.retired),
        feedetl_sns=[d.feedetl_sn for d in priced.details],
        mdtrtarea_admvs=priced.mdtrtarea_admvs,
        filing=priced.filing,
    )
