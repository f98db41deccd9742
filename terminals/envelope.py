"""The request envelope and the answer of the settlement protocol (DESIGN.md §3,
DOMAIN.md §2.2-2.3), field names exactly as the national platform's.

The envelope is decoded once at the edge with unknown fields rejected; `input` stays
raw bytes until the transaction's own Struct decodes it, so a malformed `input` is
reported against the transaction's field names.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from terminals import fields as f
from terminals.results import ResultCode

INPUT_CHARS_MAX = 40_000


class Envelope(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    infno: Annotated[str, Meta(pattern=r"^[0-9]{4}[A-Z]?$", description="transaction code")]
    msgid: f.MsgId
    mdtrtarea_admvs: f.Admdvs
    insuplc_admdvs: f.OptAdmdvs = ""
    recer_sys_code: f.Code10 = ""
    dev_no: f.Name100 = ""
    dev_safe_info: Annotated[str, Meta(max_length=2000)] = ""
    cainfo: Annotated[str, Meta(max_length=1024)] = ""
    signtype: f.Code10 = ""
    infver: f.Code10 = ""
    opter_type: Literal["1", "2", "3"]
    opter: f.Id30
    opter_name: f.Name50 = ""
    inf_time: f.DateTime
    fixmedins_code: f.FixmedinsCode
    fixmedins_name: f.Name200 = ""
    sign_no: f.OptId30 = ""
    input: msgspec.Raw


class Answer(Struct, frozen=True, kw_only=True):
    infcode: Literal[0, -1]
    inf_refmsgid: str
    refmsg_time: str
    respond_time: str
    err_msg: str | None
    output: Any
    yk_code: int
    yk_result: str


def stamp17(when: dt.datetime) -> str:
    """yyyyMMddHHmmssSSS, the answer's time format."""
    return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"


def answer(
    code: ResultCode,
    *,
    inf_refmsgid: str,
    received: dt.datetime,
    responded: dt.datetime,
    output: Any = None,
    err_msg: str | None = None,
) -> Answer:
    return Answer(
        infcode=0 if code is ResultCode.ok else -1,
        inf_refmsgid=inf_refmsgid,
        refmsg_time=stamp17(received),
        respond_time=stamp17(responded),
        err_msg=err_msg,
        output=output if output is not None else {},
        yk_code=int(code),
        yk_result=code.name,
    )
