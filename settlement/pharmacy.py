"""The decisions of a pharmacy purchase (药店购药, med_type 41; DOMAIN.md §2.6, §4.4):
2101 pre-settle and 2102 settle, the basket inside the request — pure functions of what
the engine loaded, the policy and the engine's clock. 2103 cancels through
settlement.cancellation, as 2208 does.

One request is one complete settlement: there is no registration and no detail upload
before it, so the purchase (a visit of med_type 41), its lines and their split, the
journal entry, the account and the accumulators come out of one decision. The refusal
order is the list of `if`s in `decide_pharmacy`: every line's amount is its price ×
quantity; the person is insured here under this scheme and active; the credential may
carry the money (2102: settlement/proofs.py); then the money itself as a 2207 prices it
(`price_settlement`: the basket's total, the policy, the split, the postings), with the
insured region's "pharmacy" ratio of the outpatient pooling — and where that region's
policy says `pharmacy_account_first` (Leshan's fixture), the personal account pays
first and the pool only the in-scope money it left (settlement.adjudication).
"""

from __future__ import annotations

import datetime as dt

from msgspec import Struct

from settlement.adjudication import Benefit
from settlement.catalog import CatalogItem, DetailSplit, FeeLine, split_line
from settlement.outpatient import (
    AccumulatorsRow,
    Institution,
    Person,
    Priced,
    SettleDecision,
    amount_refusal,
    check_person,
    credential_check,
    price_settlement,
)
from settlement.policy import Filing, PolicyBook
from settlement.proofs import CardProof, Presented
from settlement.refusals import Refusal, Refused

MED_TYPE = "41"


class PharmacyRequest(Struct, frozen=True, kw_only=True):
    psn_no: str
    insutype: str
    insuplc_admdvs: str  # the envelope's: the insured region the POS names
    mdtrtarea_admvs: str
    medfee_sumamt_fen: int
    acct_used: bool
    lines: list[FeeLine]
    # 2102: the patient's credential and its card proof (2101 moves nothing: None).
    presented: Presented | None = None


class PharmacyLoad(Struct, frozen=True):
    person: Person | None
    accumulators: AccumulatorsRow | None  # of the year of `now`
    catalog: list[CatalogItem]  # the basket's items that the catalog has
    proof: CardProof | None = None
    visit_seq: int | None = None  # 2102: the numbers of the purchase and its settlement
    setl_seq: int | None = None
    filing: Filing | None = None  # for the treating region; None: a local purchase


class PharmacyDecision(Struct, frozen=True, kw_only=True):
    mdtrt_id: str | None  # None for a pre-settlement
    splits: list[DetailSplit]  # in the order of the request's lines
    settle: SettleDecision


def decide_pharmacy(
    req: PharmacyRequest,
    load: PharmacyLoad,
    policies: PolicyBook,
    inst: Institution,
    now: dt.datetime,
) -> Refused | PharmacyDecision:
    """2101 (load.setl_seq None: nothing is posted) and 2102."""
    bad_amount = amount_refusal(req.lines, "input.drugdetail")
    if bad_amount is not None:
        return bad_amount
    person = check_person(
        load.person, req.psn_no, req.insuplc_admdvs, req.insutype, "input.druginfo"
    )
    if isinstance(person, Refused):
        return person
    if person.psn_insu_stas != "1":
        return Refused(Refusal.person_not_insured, "input.druginfo.psn_no: insurance is not active")
    if req.presented is not None:
        bad_credential = credential_check(
            req.presented, load.proof, person, req.insutype, policies, now
        )
        if bad_credential is not None:
            return bad_credential
    catalog = {c.med_list_codg: c for c in load.catalog}
    splits = [split_line(line, catalog.get(line.med_list_codg)) for line in req.lines]
    priced = Priced(
        details=splits,
        medfee_sumamt_fen=req.medfee_sumamt_fen,
        acct_used=req.acct_used,
        his_totals_fen={},
        benefit=Benefit.pharmacy,
        field="input.druginfo",
        what="the basket's total",
        mdtrtarea_admvs=req.mdtrtarea_admvs,
        filing=load.filing,
    )
    settle = price_settlement(priced, person, load.accumulators, load.setl_seq, policies, inst, now)
    if isinstance(settle, Refused):
        return settle
    mdtrt_id = None
    if load.visit_seq is not None:
        mdtrt_id = f"{req.mdtrtarea_admvs}{now:%Y%m%d}{load.visit_seq:012d}"
    return PharmacyDecision(mdtrt_id=mdtrt_id, splits=splits, settle=settle)
