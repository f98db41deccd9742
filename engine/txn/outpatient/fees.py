"""2204 门诊费用明细上传 outpatient fee details (INFNO 2204): each line split against the
catalog (明细分割, DOMAIN.md §4.2) and stored with the visit; the answer is the split.
The visit is locked by the load, so one visit's uploads are written one at a time."""

from __future__ import annotations

import decimal
from typing import Any, ClassVar

import msgspec

from engine.txn.context import TxContext
from engine.txn.flow import Flow
from engine.txn.wire import field_refusal, wire_datetime
from settlement.catalog import DetailSplit, FeeLine
from settlement.money import MoneyError, fen_to_yuan, scaled_int, yuan_to_fen
from settlement.outpatient import FeesDecision, FeesLoad, FeesRequest, decide_fees
from settlement.refusals import Refusal, Refused
from terminals.messages.outpatient import fees as fees_msg

INFNO = fees_msg.INFNO
_BP = decimal.Decimal(10000)
_PROP = decimal.Decimal("0.0001")


def fee_line(d: Any, prefix: str) -> FeeLine:
    """A 2204 `feedetail` or 2101/2102 `drugdetail` line at `prefix` as the domain's
    line: money to fen, quantity and price scaled to integers (a field error names
    the field)."""
    amount_fen = yuan_to_fen(d.det_item_fee_sumamt, f"{prefix}.det_item_fee_sumamt")
    # numeric(16,4) and numeric(16,6) columns: below 10^12 and 10^10 respectively.
    cnt_e4 = scaled_int(d.cnt, 4, f"{prefix}.cnt", limit=10**16 - 1)
    if cnt_e4 == 0:
        raise MoneyError(f"{prefix}.cnt", "must be greater than zero")
    pric_e6 = scaled_int(d.pric, 6, f"{prefix}.pric", limit=10**16 - 1)
    wire_datetime(d.fee_ocur_time, f"{prefix}.fee_ocur_time")
    return FeeLine(
        feedetl_sn=d.feedetl_sn,
        med_list_codg=d.med_list_codg,
        cnt_e4=cnt_e4,
        pric_e6=pric_e6,
        det_item_fee_sumamt_fen=amount_fen,
    )


def fees_request(details: list[fees_msg.FeeDetail]) -> FeesRequest | Refused:
    """The lines as the domain sees them; the upload's own consistency (one visit, no
    serial number twice, amounts that parse) is checked line by line, in order."""
    first = details[0]
    seen: set[str] = set()
    lines = []
    for i, d in enumerate(details):
        if d.mdtrt_id != first.mdtrt_id or d.psn_no != first.psn_no:
            return Refused(
                Refusal.field_invalid,
                f"input.feedetail[{i}].mdtrt_id: all lines must belong to one visit",
            )
        if d.feedetl_sn in seen:
            return Refused(
                Refusal.fee_detail_duplicate,
                f"input.feedetail[{i}].feedetl_sn: {d.feedetl_sn} appears twice",
            )
        seen.add(d.feedetl_sn)
        try:
            lines.append(fee_line(d, f"feedetail[{i}]"))
        except MoneyError as exc:
            return field_refusal(exc)
    return FeesRequest(mdtrt_id=first.mdtrt_id, psn_no=first.psn_no, lines=lines)


def detail_result(d: Any, s: DetailSplit) -> fees_msg.DetailResult:
    """One line's split as 2204's `result` and 2101/2102's `detlcutinfo` show it."""
    return fees_msg.DetailResult(
        feedetl_sn=d.feedetl_sn,
        det_item_fee_sumamt=fen_to_yuan(s.det_item_fee_sumamt_fen),
        cnt=d.cnt,
        pric=d.pric,
        pric_uplmt_amt=fen_to_yuan(s.pric_uplmt_amt_fen),
        selfpay_prop=(decimal.Decimal(s.selfpay_prop_bp) / _BP).quantize(_PROP),
        fulamt_ownpay_amt=fen_to_yuan(s.fulamt_ownpay_amt_fen),
        overlmt_amt=fen_to_yuan(s.overlmt_amt_fen),
        preselfpay_amt=fen_to_yuan(s.preselfpay_amt_fen),
        inscp_scp_amt=fen_to_yuan(s.inscp_scp_amt_fen),
        chrgitm_lv=str(s.chrgitm_lv),
        med_chrgitm_type="",
        bas_medn_flag="0",
        hi_nego_drug_flag="0",
        chld_medc_flag="0",
        list_sp_item_flag="0",
        lmt_used_flag="0",
        drt_reim_flag="0",
        memo=s.memo,
    )


def detail_row(mdtrt_id: str, chrg_bchno: str, w: Any, s: DetailSplit) -> dict[str, Any]:
    """A `fee_details` row as the write functions take it: the wire line `w` (2204's
    feedetail, 2102's drugdetail) with its split."""
    return {
        "mdtrt_id": mdtrt_id,
        "feedetl_sn": w.feedetl_sn,
        "chrg_bchno": chrg_bchno,
        "med_list_codg": w.med_list_codg,
        "medins_list_codg": w.medins_list_codg,
        "cnt": str(w.cnt),
        "pric": str(w.pric),
        "fee_ocur_time": w.fee_ocur_time,
        "det_item_fee_sumamt_fen": s.det_item_fee_sumamt_fen,
        "fulamt_ownpay_amt_fen": s.fulamt_ownpay_amt_fen,
        "overlmt_amt_fen": s.overlmt_amt_fen,
        "preselfpay_amt_fen": s.preselfpay_amt_fen,
        "inscp_scp_amt_fen": s.inscp_scp_amt_fen,
        "pric_uplmt_amt_fen": s.pric_uplmt_amt_fen,
        "selfpay_prop_bp": s.selfpay_prop_bp,
        "chrgitm_lv": str(s.chrgitm_lv),
        "memo": s.memo,
        "detail": msgspec.to_builtins(w),
    }


class Fees(Flow[FeesRequest, FeesLoad, FeesDecision]):
    load_function: ClassVar[str] = "yk_load_outpatient_fees"
    write_function: ClassVar[str | None] = "yk_write_outpatient_fees"
    load_type = FeesLoad

    def request(self, ctx: TxContext, inp: Any) -> FeesRequest | Refused:
        return fees_request(inp.feedetail)

    def load_args(self, ctx: TxContext, req: FeesRequest) -> tuple[Any, ...]:
        sns = [line.feedetl_sn for line in req.lines]
        codes = sorted({line.med_list_codg for line in req.lines})
        return (req.mdtrt_id, sns, codes)

    def decide(self, ctx: TxContext, req: FeesRequest, load: FeesLoad) -> FeesDecision | Refused:
        return decide_fees(req, load, ctx.envelope.fixmedins_code)

    def output(
        self, ctx: TxContext, req: FeesRequest, load: FeesLoad, d: FeesDecision
    ) -> fees_msg.Output:
        wire: list[fees_msg.FeeDetail] = ctx.input.feedetail
        return fees_msg.Output(
            result=[detail_result(w, s) for w, s in zip(wire, d.splits, strict=True)]
        )

    def write_doc(
        self,
        ctx: TxContext,
        req: FeesRequest,
        load: FeesLoad,
        d: FeesDecision,
        output: fees_msg.Output,
    ) -> dict[str, Any]:
        wire: list[fees_msg.FeeDetail] = ctx.input.feedetail
        return {
            "details": [
                detail_row(w.mdtrt_id, w.chrg_bchno, w, s)
                for w, s in zip(wire, d.splits, strict=True)
            ]
        }


FLOW = Fees()
