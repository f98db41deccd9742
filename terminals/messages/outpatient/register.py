"""2201 门诊挂号 outpatient registration: opens a visit, returns `mdtrt_id`."""

from __future__ import annotations

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2201"
NAME = "outpatient registration"


class Data(In, frozen=True, kw_only=True):
    psn_no: f.Id30
    insutype: f.Insutype
    begntime: f.DateTime
    mdtrt_cert_type: f.CertType
    mdtrt_cert_no: f.Code50
    ipt_otp_no: f.Id30
    atddr_no: f.OptId30 = ""
    dr_name: f.Name50 = ""
    dept_code: f.OptId30 = ""
    dept_name: f.Name100 = ""
    caty: f.Code10 = ""
    # With mdtrt_cert_type 01 or 03: the 1101's yk_card_proof.cred_ref (1331-1336).
    yk_cred_ref: f.CredRef = ""


class Input(In, frozen=True, kw_only=True):
    data: Data


class RegOut(Out, frozen=True, kw_only=True):
    mdtrt_id: str
    psn_no: str
    ipt_otp_no: str


class Output(Out, frozen=True, kw_only=True):
    data: RegOut
