"""2204 fee details: records the lines of a visit and answers each line's split
(明细分割, DOMAIN.md §4.2) against the catalog. Every line is checked before any is
stored: amount = price × quantity to the fen, no duplicate `feedetl_sn`, one visit."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from engine.txn.common import (
    ClaimMsgid,
    DecodeInput,
    RequireInsuredRegion,
    RequireSignIn,
    check_visit,
    fetch_visit,
    money_message,
    wire_datetime,
)
from engine.txn.context import TxContext
from engine.txn.pipeline import Participant
from engine.txn.registry import TxSpec
from settlement.catalog import (
    CatalogItem,
    DetailSplit,
    FeeLine,
    ItemClass,
    line_amount_fen,
    split_line,
)
from settlement.money import MoneyError, fen_to_yuan, scaled_int, yuan_to_fen
from terminals.messages import tx2204
from terminals.results import ResultCode

_BP = decimal.Decimal(10000)


@dataclass(frozen=True)
class Line:
    wire: tx2204.FeeDetail
    fee: FeeLine
    split: DetailSplit


def _line_from_wire(i: int, d: tx2204.FeeDetail) -> FeeLine:
    prefix = f"feedetail[{i}]"
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


class UploadDetails(Participant):
    name: ClassVar[str] = "upload_details"

    async def prepare(self, ctx: TxContext) -> ResultCode | None:
        details: list[tx2204.FeeDetail] = ctx.input.feedetail
        first = details[0]
        fees: list[FeeLine] = []
        seen: set[str] = set()
        for i, d in enumerate(details):
            if d.mdtrt_id != first.mdtrt_id or d.psn_no != first.psn_no:
                return ctx.refuse(
                    ResultCode.field_invalid,
                    f"input.feedetail[{i}].mdtrt_id: all lines must belong to one visit",
                )
            if d.feedetl_sn in seen:
                return ctx.refuse(
                    ResultCode.fee_detail_duplicate,
                    f"input.feedetail[{i}].feedetl_sn: {d.feedetl_sn} appears twice",
                )
            seen.add(d.feedetl_sn)
            try:
                fee = _line_from_wire(i, d)
            except MoneyError as exc:
                return ctx.refuse(ResultCode.field_invalid, money_message(exc, "input"))
            if line_amount_fen(fee.cnt_e4, fee.pric_e6) != fee.det_item_fee_sumamt_fen:
                return ctx.refuse(
                    ResultCode.fee_detail_amount_mismatch,
                    f"input.feedetail[{i}].det_item_fee_sumamt: {d.det_item_fee_sumamt} is not"
                    f" pric × cnt ({d.pric} × {d.cnt}) rounded to the fen",
                )
            fees.append(fee)
        visit = await fetch_visit(ctx, first.mdtrt_id, lock=True)
        refused = check_visit(ctx, visit, first.mdtrt_id, first.psn_no)
        if refused is not None:
            return refused
        timeout_s = ctx.services.command_timeout_s
        taken = await ctx.conn.fetch(
            "SELECT feedetl_sn FROM fee_details WHERE mdtrt_id = $1 AND feedetl_sn = ANY($2)",
            first.mdtrt_id,
            list(seen),
            timeout=timeout_s,
        )
        if taken:
            return ctx.refuse(
                ResultCode.fee_detail_duplicate,
                f"input.feedetail.feedetl_sn: {taken[0]['feedetl_sn']} was uploaded before",
            )
        rows = await ctx.conn.fetch(
            "SELECT * FROM catalog_items WHERE med_list_codg = ANY($1)",
            list({f.med_list_codg for f in fees}),
            timeout=timeout_s,
        )
        catalog = {r["med_list_codg"]: _catalog_item(r) for r in rows}
        ctx.data = [
            Line(d, f, split_line(f, catalog.get(f.med_list_codg)))
            for d, f in zip(details, fees, strict=True)
        ]
        return None

    async def commit(self, ctx: TxContext) -> None:
        lines: list[Line] = ctx.data
        await ctx.conn.executemany(
            "INSERT INTO fee_details (mdtrt_id, feedetl_sn, chrg_bchno, med_list_codg,"
            " medins_list_codg, cnt, pric, fee_ocur_time, det_item_fee_sumamt_fen,"
            " fulamt_ownpay_amt_fen, overlmt_amt_fen, preselfpay_amt_fen, inscp_scp_amt_fen,"
            " pric_uplmt_amt_fen, selfpay_prop_bp, chrgitm_lv, memo, detail)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)",
            [_row(line) for line in lines],
            timeout=ctx.services.command_timeout_s,
        )
        ctx.output = tx2204.Output(result=[_result(line) for line in lines])


def _catalog_item(r: object) -> CatalogItem:
    row = dict(r)  # type: ignore[call-overload]
    return CatalogItem(
        med_list_codg=row["med_list_codg"],
        name=row["name"],
        chrgitm_lv=ItemClass(row["chrgitm_lv"]),
        list_type=row["list_type"],
        price_ceiling_fen_per_unit=row["price_ceiling_fen_per_unit"],
        selfpay_prop_bp=row["selfpay_prop_bp"],
    )


def _row(line: Line) -> tuple[object, ...]:
    d, s = line.wire, line.split
    return (
        d.mdtrt_id,
        d.feedetl_sn,
        d.chrg_bchno,
        d.med_list_codg,
        d.medins_list_codg,
        d.cnt,
        d.pric,
        wire_datetime(d.fee_ocur_time, "fee_ocur_time"),  # checked in prepare
        s.det_item_fee_sumamt_fen,
        s.fulamt_ownpay_amt_fen,
        s.overlmt_amt_fen,
        s.preselfpay_amt_fen,
        s.inscp_scp_amt_fen,
        s.pric_uplmt_amt_fen,
        s.selfpay_prop_bp,
        str(s.chrgitm_lv),
        s.memo,
        msgspec.json.encode(d).decode(),
    )


def _result(line: Line) -> tx2204.DetailResult:
    d, s = line.wire, line.split
    return tx2204.DetailResult(
        feedetl_sn=d.feedetl_sn,
        det_item_fee_sumamt=fen_to_yuan(s.det_item_fee_sumamt_fen),
        cnt=d.cnt,
        pric=d.pric,
        pric_uplmt_amt=fen_to_yuan(s.pric_uplmt_amt_fen),
        selfpay_prop=(decimal.Decimal(s.selfpay_prop_bp) / _BP).quantize(decimal.Decimal("0.0001")),
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


SPEC = TxSpec(
    infno=tx2204.INFNO,
    name=tx2204.NAME,
    input_type=tx2204.Input,
    output_type=tx2204.Output,
    participants=(
        DecodeInput(tx2204.Input),
        RequireSignIn(),
        RequireInsuredRegion(),
        ClaimMsgid(),
        UploadDetails(),
    ),
    mutating=True,
)
