"""2204 门诊费用明细上传 fee details of an outpatient visit; the answer splits each
line (明细分割, DOMAIN.md §4.2)."""

from __future__ import annotations

import decimal
from typing import Annotated

from msgspec import Meta

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2204"
NAME = "outpatient fee details"
DETAILS_MAX = 500


class FeeDetail(In, frozen=True, kw_only=True):
    feedetl_sn: f.Id30
    mdtrt_id: f.Id30
    psn_no: f.Id30
    chrg_bchno: f.Id30
    dise_codg: f.Code50 = ""
    rxno: f.OptId30 = ""
    rx_circ_flag: f.Flag = "0"
    fee_ocur_time: f.DateTime
    med_list_codg: f.Code50
    medins_list_codg: f.Code50
    det_item_fee_sumamt: f.Yuan
    cnt: f.Quantity
    pric: f.UnitPrice
    sin_dos_dscr: f.Name200 = ""
    used_frqu_dscr: f.Name200 = ""
    prd_days: Annotated[decimal.Decimal | None, Meta(description="days")] = None
    medc_way_dscr: f.Name200 = ""
    bilg_dept_codg: f.OptId30 = ""
    bilg_dept_name: f.Name100 = ""
    bilg_dr_codg: f.OptId30 = ""
    bilg_dr_name: f.Name50 = ""
    acord_dept_codg: f.OptId30 = ""
    acord_dept_name: f.Name100 = ""
    orders_dr_code: f.OptId30 = ""
    orders_dr_name: f.Name50 = ""
    hosp_appr_flag: Annotated[str, Meta(pattern=r"^[0-2]?$")] = ""
    tcmdrug_used_way: f.Code6 = ""
    etip_flag: Annotated[str, Meta(pattern=r"^[01]?$")] = ""
    etip_hosp_code: f.OptId30 = ""
    dscg_tkdrug_flag: Annotated[str, Meta(pattern=r"^[01]?$")] = ""
    matn_fee_flag: Annotated[str, Meta(pattern=r"^[01]?$")] = ""


class Input(In, frozen=True, kw_only=True):
    feedetail: Annotated[list[FeeDetail], Meta(min_length=1, max_length=DETAILS_MAX)]


class DetailResult(Out, frozen=True, kw_only=True):
    feedetl_sn: str
    det_item_fee_sumamt: decimal.Decimal
    cnt: decimal.Decimal
    pric: decimal.Decimal
    pric_uplmt_amt: decimal.Decimal
    selfpay_prop: decimal.Decimal
    fulamt_ownpay_amt: decimal.Decimal
    overlmt_amt: decimal.Decimal
    preselfpay_amt: decimal.Decimal
    inscp_scp_amt: decimal.Decimal
    chrgitm_lv: str
    med_chrgitm_type: str
    bas_medn_flag: str
    hi_nego_drug_flag: str
    chld_medc_flag: str
    list_sp_item_flag: str
    lmt_used_flag: str
    drt_reim_flag: str
    memo: str


class Output(Out, frozen=True, kw_only=True):
    result: list[DetailResult]
