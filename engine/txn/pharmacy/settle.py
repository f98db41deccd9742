"""2102 药店结算 pharmacy settlement (INFNO 2102): the whole purchase in one write — the
purchase (a visit of med_type 41), its lines with their split, the journal entry, the
settlement, the personal account and the year's accumulators — after a load that
locked person and accumulators in the core's order, so concurrent purchases and
settlements of one person queue and none can overdraw the account or pass the cap."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from engine.invariant import InvariantViolation
from engine.txn.context import TxContext
from engine.txn.outpatient.fees import detail_row
from engine.txn.outpatient.settle import FLOW as OUTPATIENT_SETTLE
from engine.txn.pharmacy.presettle import PharmacyPreSettle
from settlement.outpatient import SettleLoad, SettleRequest
from settlement.pharmacy import MED_TYPE, PharmacyDecision, PharmacyLoad, PharmacyRequest
from terminals.messages import setl
from terminals.messages.pharmacy import presettle as presettle_msg
from terminals.messages.pharmacy import settle as settle_msg

INFNO = settle_msg.INFNO


class PharmacySettle(PharmacyPreSettle):
    write_function: ClassVar[str | None] = "yk_write_pharmacy_settle"
    lock: ClassVar[bool] = True

    def write_doc(
        self,
        ctx: TxContext,
        req: PharmacyRequest,
        load: PharmacyLoad,
        d: PharmacyDecision,
        output: presettle_msg.Output,
    ) -> dict[str, Any]:
        if d.mdtrt_id is None or d.settle.setl_id is None:
            raise InvariantViolation("a 2102 decided without its mdtrt_id and setl_id")
        env, info = ctx.envelope, ctx.input.druginfo
        wire = ctx.input.drugdetail
        # The settlement's rows as 2207 writes them (one SQL function for both).
        settle_req = SettleRequest(
            mdtrt_id=d.mdtrt_id,
            psn_no=req.psn_no,
            insutype=req.insutype,
            insuplc_admdvs=req.insuplc_admdvs,
            mdtrtarea_admvs=req.mdtrtarea_admvs,
            med_type=MED_TYPE,
            medfee_sumamt_fen=req.medfee_sumamt_fen,
            acct_used=req.acct_used,
        )
        settle_load = SettleLoad(
            visit=None,
            person=load.person,
            accumulators=load.accumulators,
            live_setl_id=None,
            details=d.splits,
            setl_seq=load.setl_seq,
        )
        stored = setl.Output(setlinfo=output.setlinfo, setldetail=output.setldetail)
        doc = OUTPATIENT_SETTLE.write_doc(ctx, settle_req, settle_load, d.settle, stored)
        doc["visit"] = {
            "mdtrt_id": d.mdtrt_id,
            "psn_no": req.psn_no,
            "insuplc_admdvs": req.insuplc_admdvs,
            "mdtrtarea_admvs": req.mdtrtarea_admvs,
            "fixmedins_code": env.fixmedins_code,
            "insutype": req.insutype,
            "med_type": MED_TYPE,
            "ipt_otp_no": d.mdtrt_id,  # a purchase has no outpatient number of its own
            "mdtrt_cert_type": info.mdtrt_cert_type,
            "begntime": info.begntime,
            "registration": msgspec.to_builtins(info),
            "state": "registered",
        }
        # A purchase has no charge batches: its lines are one.
        doc["details"] = [
            detail_row(d.mdtrt_id, "", w, s) for w, s in zip(wire, d.splits, strict=True)
        ]
        return doc

    def money(self, d: PharmacyDecision) -> tuple[str, int, int, int]:
        s = d.settle.split
        return ("settle", s.fund_pay_sumamt_fen, s.acct_pay_fen, s.psn_cash_pay_fen)


FLOW = PharmacySettle()
