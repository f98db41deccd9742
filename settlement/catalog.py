"""Catalog items and the per-line split of fee details (明细分割, DOMAIN.md §4.2).

Each line's amount is split into four parts that add up to it exactly:
fully self-paid (unknown item or 丙类), above the price ceiling, the 乙类 pay-first
share, and the in-scope rest. Quantities travel as integers ×10^4 and unit prices as
integers ×10^6 yuan (the wire's 4 and 6 decimals), so no float is ever involved.
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
    med_list_codg: str
    name: str
    chrgitm_lv: ItemClass
    list_type: str
    price_ceiling_fen_per_unit: int | None
    selfpay_prop_bp: int


class FeeLine(Struct, frozen=True):
    feedetl_sn: str
    med_list_codg: str
    cnt_e4: int
    pric_e6: int
    det_item_fee_sumamt_fen: int


class DetailSplit(Struct, frozen=True):
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
    amount = line.det_item_fee_sumamt_fen
    check(amount >= 0, f"line {line.feedetl_sn}: negative amount")
    if item is None or item.chrgitm_lv is ItemClass.bing:
        memo = "目录外项目, 全自费" if item is None else "丙类, 全自费"
        return DetailSplit(
            line.feedetl_sn,
            amount,
            amount,
            0,
            0,
            0,
            0,
            0,
            item.chrgitm_lv if item else ItemClass.bing,
            memo,
        )
    ceiling_total = 0
    base = amount
    memo = ""
    if item.price_ceiling_fen_per_unit is not None:
        ceiling_total = round_half_up(item.price_ceiling_fen_per_unit * line.cnt_e4, CNT_SCALE)
        if line.pric_e6 > item.price_ceiling_fen_per_unit * (PRIC_SCALE // 100):
            base = min(amount, ceiling_total)
            memo = "超限价部分自费"
    overlmt = amount - base
    prop = item.selfpay_prop_bp if item.chrgitm_lv is ItemClass.yi else 0
    preselfpay = ratio_of(base, prop)
    inscp = base - preselfpay
    split = DetailSplit(
        line.feedetl_sn,
        amount,
        0,
        overlmt,
        preselfpay,
        inscp,
        ceiling_total,
        prop,
        item.chrgitm_lv,
        memo,
    )
    check(
        split.fulamt_ownpay_amt_fen + overlmt + preselfpay + inscp == amount
        and min(overlmt, preselfpay, inscp) >= 0,
        f"line {line.feedetl_sn}: split does not add up",
    )
    return split
