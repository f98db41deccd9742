"""Catalog items and the per-line split of fee details (明细分割, DOMAIN.md §4.2).

Each line's amount is split into four parts, every one >= 0, that add up to it
exactly (checked on every call, DOMAIN.md §2.8):

    det_item_fee_sumamt = fulamt_ownpay + overlmt + preselfpay + inscp_scp

fully self-paid (item not in the catalog, or 丙类), above the price ceiling, the 乙类
pay-first share, and the in-scope rest. Quantities travel as integers ×10^4 and unit
prices as integers ×10^6 yuan (the wire's 4 and 6 decimals), so no float is ever
involved; every rounding is half-up to the fen.
"""

from __future__ import annotations

import enum

from msgspec import Struct

from settlement.errors import check
from settlement.money import ratio_of, round_half_up

CNT_SCALE = 10_000  # quantities ×10^4
PRIC_SCALE = 1_000_000  # unit price in yuan ×10^6 = fen ×10^4


class ItemClass(enum.StrEnum):
    """收费项目等级 chrgitm_lv: 甲 in scope, 乙 pay-first share, 丙 self-paid."""

    jia = "01"
    yi = "02"
    bing = "03"


class CatalogItem(Struct, frozen=True):
    """One entry of the treating region's catalog (1301-1319), as the split needs it.

    `price_ceiling_fen_per_unit` is the 限价 on the unit price (None: no ceiling);
    `selfpay_prop_bp` is the 乙类 pay-first ratio (ignored, and reported as 0, for 甲/丙).
    """

    med_list_codg: str
    name: str
    chrgitm_lv: ItemClass
    list_type: str
    price_ceiling_fen_per_unit: int | None
    selfpay_prop_bp: int


class FeeLine(Struct, frozen=True):
    """One fee detail as uploaded (2204/2301): quantity ×10^4, unit price ×10^6 yuan
    (that is fen ×10^4), amount in fen; the edge checks amount = line_amount_fen()."""

    feedetl_sn: str
    med_list_codg: str
    cnt_e4: int
    pric_e6: int
    det_item_fee_sumamt_fen: int


class DetailSplit(Struct, frozen=True):
    """The 2204 `result` row of one line, in fen and basis points."""

    feedetl_sn: str
    det_item_fee_sumamt_fen: int
    fulamt_ownpay_amt_fen: int
    overlmt_amt_fen: int
    preselfpay_amt_fen: int
    inscp_scp_amt_fen: int
    # 定价上限金额: the ceiling × quantity, or 0 when the item has no ceiling.
    pric_uplmt_amt_fen: int
    selfpay_prop_bp: int
    chrgitm_lv: ItemClass
    memo: str


def line_amount_fen(cnt_e4: int, pric_e6: int) -> int:
    """price × quantity in fen, half-up (what det_item_fee_sumamt must equal)."""
    # pric_e6 is fen ×10^4, cnt_e4 is ×10^4: the product is fen ×10^8.
    return round_half_up(cnt_e4 * pric_e6, CNT_SCALE * (PRIC_SCALE // 100))


def split_line(line: FeeLine, item: CatalogItem | None) -> DetailSplit:
    """Split one line (DOMAIN.md §4.2): unknown or 丙 -> all self-paid; above the
    ceiling -> the excess over ceiling × quantity is overlmt; 乙 -> the pay-first share
    of the rest (half-up); what remains is in scope."""
    amount = line.det_item_fee_sumamt_fen
    check(
        min(amount, line.cnt_e4, line.pric_e6) >= 0,
        f"line {line.feedetl_sn}: negative amount, quantity or price (the edge refuses them)",
    )
    if item is None or item.chrgitm_lv is ItemClass.bing:
        return DetailSplit(
            feedetl_sn=line.feedetl_sn,
            det_item_fee_sumamt_fen=amount,
            fulamt_ownpay_amt_fen=amount,
            overlmt_amt_fen=0,
            preselfpay_amt_fen=0,
            inscp_scp_amt_fen=0,
            pric_uplmt_amt_fen=0,
            selfpay_prop_bp=0,
            chrgitm_lv=ItemClass.bing,
            memo="目录外项目, 全自费" if item is None else "丙类, 全自费",
        )
    ceiling = item.price_ceiling_fen_per_unit
    ceiling_total = 0
    base = amount
    memo = ""
    if ceiling is not None:
        check(ceiling >= 0, f"item {item.med_list_codg}: negative price ceiling")
        ceiling_total = round_half_up(ceiling * line.cnt_e4, CNT_SCALE)
        if line.pric_e6 > ceiling * (PRIC_SCALE // 100):
            base = min(amount, ceiling_total)  # clamp: never more in scope than billed
            memo = "超限价部分自费"
    prop = item.selfpay_prop_bp if item.chrgitm_lv is ItemClass.yi else 0
    preselfpay = ratio_of(base, prop)
    split = DetailSplit(
        feedetl_sn=line.feedetl_sn,
        det_item_fee_sumamt_fen=amount,
        fulamt_ownpay_amt_fen=0,
        overlmt_amt_fen=amount - base,
        preselfpay_amt_fen=preselfpay,
        inscp_scp_amt_fen=base - preselfpay,
        pric_uplmt_amt_fen=ceiling_total,
        selfpay_prop_bp=prop,
        chrgitm_lv=item.chrgitm_lv,
        memo=memo,
    )
    parts = (split.overlmt_amt_fen, preselfpay, split.inscp_scp_amt_fen)
    check(
        sum(parts) == amount and min(parts) >= 0,
        f"line {line.feedetl_sn}: split {parts} does not add up to {amount} fen",
    )
    return split
