"""2101 药店预结算 pharmacy pre-settlement: the split 2102 would post for the basket in the
request (`druginfo` + `drugdetail[]`), posting nothing; answered with `setlinfo`,
`setldetail` and the per-item split `detlcutinfo`."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from terminals import fields as f
from terminals.messages.base import In, Out
from terminals.messages.outpatient.fees import DetailResult
from terminals.messages.setl import SetlDetail, SetlInfo

INFNO = "2101"
NAME = "pharmacy pre-settlement"
DETAILS_MAX = 200


class DrugInfo(In, frozen=True, kw_only=True):
    psn_no: f.Id30
    mdtrt_cert_type: f.CertType
    mdtrt_cert_no: f.Code50
    begntime: f.DateTime
    medfee_sumamt: f.Yuan
    insutype: f.Insutype
    med_type: Literal["41"] = "41"
    acct_used_flag: Literal["0", "1"] = "1"
    psn_setlway: f.Code6 = "01"
    invono: f.Code50 = ""
    dise_codg: f.Code50 = ""
    dise_name: f.Name100 = ""


class DrugDetail(In, frozen=True, kw_only=True):
    feedetl_sn: f.Id30
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
    medc_way_dscr: f.Name200 = ""
    bilg_dr_codg: f.OptId30 = ""
    bilg_dr_name: f.Name50 = ""
    tcmdrug_used_way: f.Code6 = ""


class Input(In, frozen=True, kw_only=True):
    druginfo: DrugInfo
    drugdetail: Annotated[list[DrugDetail], Meta(min_length=1, max_length=DETAILS_MAX)]


class Output(Out, frozen=True, kw_only=True):
    setlinfo: SetlInfo
    setldetail: list[SetlDetail]
    detlcutinfo: list[DetailResult]
