"""1101 人员信息获取 person info by credential. For now by ID number
(`mdtrt_cert_type` 02); card (03) and e-card (01) arrive with card authentication."""

from __future__ import annotations

import decimal

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "1101"
NAME = "person info"


class Data(In, frozen=True, kw_only=True):
    mdtrt_cert_type: f.CertType
    mdtrt_cert_no: f.Code50
    card_sn: f.Code50 = ""
    begntime: str = ""
    psn_cert_type: f.Code6 = ""
    certno: f.Code50 = ""
    psn_name: f.Name50 = ""


class Input(In, frozen=True, kw_only=True):
    data: Data


class BaseInfo(Out, frozen=True, kw_only=True):
    psn_no: str
    psn_cert_type: str
    certno: str
    psn_name: str
    gend: str
    naty: str
    brdy: str
    age: int


class InsuInfo(Out, frozen=True, kw_only=True):
    balc: decimal.Decimal
    insutype: str
    psn_type: str
    psn_insu_stas: str
    psn_insu_date: str
    paus_insu_date: str | None
    cvlserv_flag: str
    insuplc_admdvs: str
    emp_name: str


class IdetInfo(Out, frozen=True, kw_only=True):
    psn_idet_type: str
    psn_type_lv: str
    memo: str
    begntime: str
    endtime: str | None


class Output(Out, frozen=True, kw_only=True):
    baseinfo: BaseInfo
    insuinfo: list[InsuInfo]
    idetinfo: list[IdetInfo]
