"""2101 药店预结算 pharmacy pre-settlement (INFNO 2101): the split 2102 would post for the
basket in the request, posting nothing. Read-only: its load runs in autocommit, without
row locks."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.invariant import InvariantViolation
from engine.txn.card.credential import presented
from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.outpatient.answers import setl_output
from engine.txn.outpatient.fees import detail_result, fee_line
from engine.txn.outpatient.presettle import institution
from engine.txn.wire import field_refusal, wire_datetime
from settlement.lifecycle import VisitState
from settlement.money import MoneyError, yuan_to_fen
from settlement.outpatient import Visit
from settlement.pharmacy import PharmacyDecision, PharmacyLoad, PharmacyRequest, decide_pharmacy
from settlement.refusals import Refusal, Refused
from terminals.messages.pharmacy import presettle as presettle_msg

INFNO = presettle_msg.INFNO


def pharmacy_request(ctx: TxContext, inp: Any, *, settles: bool) -> PharmacyRequest | Refused:
    """The domain's request from a 2101/2102 input: money to fen and every line parsed
    (a field error names the field), no serial number twice."""
    info = inp.druginfo
    seen: set[str] = set()
    lines = []
    try:
        wire_datetime(info.begntime, "druginfo.begntime")
        medfee_fen = yuan_to_fen(info.medfee_sumamt, "druginfo.medfee_sumamt")
        for i, d in enumerate(inp.drugdetail):
            if d.feedetl_sn in seen:
                return Refused(
                    Refusal.fee_detail_duplicate,
                    f"input.drugdetail[{i}].feedetl_sn: {d.feedetl_sn} appears twice",
                )
            seen.add(d.feedetl_sn)
            lines.append(fee_line(d, f"drugdetail[{i}]"))
    except MoneyError as exc:
        return field_refusal(exc)
    env = ctx.envelope
    return PharmacyRequest(
        psn_no=info.psn_no,
        insutype=info.insutype,
        insuplc_admdvs=env.insuplc_admdvs,
        mdtrtarea_admvs=env.mdtrtarea_admvs,
        medfee_sumamt_fen=medfee_fen,
        acct_used=info.acct_used_flag == "1",
        lines=lines,
        # 2102 moves money: its credential must be proven (2101 only shows the split).
        presented=(
            presented(ctx, info.mdtrt_cert_type, info.yk_cred_ref, info.psn_no) if settles else None
        ),
    )


def purchase(ctx: TxContext, req: PharmacyRequest, d: PharmacyDecision) -> Visit:
    """The purchase as the answer shows it (2101 has no mdtrt_id yet)."""
    return Visit(
        mdtrt_id=d.mdtrt_id or "",
        psn_no=req.psn_no,
        fixmedins_code=ctx.envelope.fixmedins_code,
        insutype=req.insutype,
        mdtrt_cert_type=ctx.input.druginfo.mdtrt_cert_type,
        state=VisitState.registered,
    )


class PharmacyPreSettle(Flow[PharmacyRequest, PharmacyLoad, PharmacyDecision]):
    load_function: ClassVar[str] = "yk_load_pharmacy_settle"
    load_type = PharmacyLoad
    lock: ClassVar[bool] = False

    def request(self, ctx: TxContext, inp: Any) -> PharmacyRequest | Refused:
        return pharmacy_request(ctx, inp, settles=self.lock)

    def load_args(self, ctx: TxContext, req: PharmacyRequest) -> tuple[Any, ...]:
        codes = sorted({line.med_list_codg for line in req.lines})
        cred_ref = req.presented.cred_ref if req.presented is not None else ""
        return (
            req.psn_no,
            ctx.now.year,
            codes,
            self.lock,
            req.insuplc_admdvs,
            cred_ref,
            req.mdtrtarea_admvs,
            ctx.now.date(),
        )

    def decide(
        self, ctx: TxContext, req: PharmacyRequest, load: PharmacyLoad
    ) -> PharmacyDecision | Refused:
        return decide_pharmacy(req, load, ctx.services.policies, institution(ctx), ctx.now)

    def output(
        self, ctx: TxContext, req: PharmacyRequest, load: PharmacyLoad, d: PharmacyDecision
    ) -> presettle_msg.Output:
        if load.person is None:  # decide_pharmacy refuses a missing person
            raise InvariantViolation("a pharmacy settlement decided without its person")
        answer = setl_output(
            load.person,
            purchase(ctx, req, d),
            d.settle,
            med_type=ctx.input.druginfo.med_type,
            msgid=ctx.envelope.msgid,
            setl_time=ctx.now,
        )
        wire = ctx.input.drugdetail
        return presettle_msg.Output(
            setlinfo=answer.setlinfo,
            setldetail=answer.setldetail,
            detlcutinfo=[detail_result(w, s) for w, s in zip(wire, d.splits, strict=True)],
        )


FLOW = PharmacyPreSettle()
