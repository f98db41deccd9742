"""2203 门诊就诊信息上传 visit information and diagnoses of an outpatient visit."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "2203"
NAME = "outpatient visit info"
DIAGNOSES_MAX = 50


class MdtrtInfo(In, frozen=True, kw_only=True):
    mdtrt_id: f.Id30
    psn_no: f.Id30
    med_type: f.MedType
    begntime: f.DateTime
    main_cond_dscr: f.Text500 = ""
    dise_codg: f.Code50 = ""
    dise_name: f.Name200 = ""
    birctrl_type: f.Code6 = ""
    birctrl_matn_date: str = ""


class DiseInfo(In, frozen=True, kw_only=True):
    diag_type: Annotated[str, Meta(pattern=r"^[1-3]$")]
    diag_srt_no: Annotated[int, Meta(ge=1, le=99)]
    diag_code: f.Code20
    diag_name: f.Name200
    diag_dept: f.Name50 = ""
    dise_dor_no: f.OptId30 = ""
    dise_dor_name: f.Name50 = ""
    diag_time: f.DateTime
    vali_flag: f.Flag = "1"


class Input(In, frozen=True, kw_only=True):
    mdtrtinfo: MdtrtInfo
    diseinfo: Annotated[list[DiseInfo], Meta(max_length=DIAGNOSES_MAX)] = msgspec.field(
        default_factory=list
    )


class Output(Out, frozen=True, kw_only=True):
    pass
