"""1101 人员信息获取 person info by credential (`mdtrt_cert_type`): 02 ID number, 03
social security card, 01 e-card.

By card (03) `mdtrt_cert_no` is the card number (社保卡号), `card_sn` the card's
32-hex identification code, and the yikatong extension `yk_card_auth` carries the
INTERNAL AUTHENTICATE answer over a challenge from 9301. By e-card (01)
`mdtrt_cert_no` is the token id (the national ecToken is at most 40 characters) and
the extension `yk_ecard_qr` carries the whole signed QR text. The answer is the same
for every credential. Refusals: 13xx result codes.
The e-card QR token format is in card.ecard.
"""

from __future__ import annotations

import decimal
from typing import Final

from terminals import fields as f
from terminals.messages.base import In, Out

INFNO = "1101"
NAME = "person info"

CERT_TYPE_ECARD: Final = "01"
CERT_TYPE_ID_NUMBER: Final = "02"
CERT_TYPE_CARD: Final = "03"


class CardAuth(In, frozen=True, kw_only=True):
    """yikatong extension for mdtrt_cert_type 03: the card's INTERNAL AUTHENTICATE.
    `challenge` is the engine's (from 9301, single use, 60 s, bound to this terminal
    and card_sn); `process_factor` the card's GET CHALLENGE sent before it;
    `cryptogram` the card's 8-byte answer. All hex."""

    challenge: f.Hex8Bytes
    process_factor: f.Hex8Bytes
    cryptogram: f.Hex8Bytes

    def __repr__(self) -> str:  # STYLE.md §10: cryptograms stay out of logs
        return "CardAuth(<hidden>)"


class Data(In, frozen=True, kw_only=True):
    mdtrt_cert_type: f.CertType
    mdtrt_cert_no: f.Code50
    card_sn: f.OptCardSn = ""
    begntime: str = ""
    psn_cert_type: f.Code6 = ""
    certno: f.Code50 = ""
    psn_name: f.Name50 = ""
    yk_card_auth: CardAuth | None = None
    yk_ecard_qr: f.EcardQr = ""

    def __repr__(self) -> str:
        return f"Data(mdtrt_cert_type={self.mdtrt_cert_type!r}, <credential hidden>)"


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


class CardProof(Out, frozen=True, kw_only=True):
    """yikatong extension of the answer by card (03) or e-card (01): the engine's record
    that this person's card was proven at this terminal for this institution. A 2201 or
    2207 by card or e-card carries `cred_ref` as `data.yk_cred_ref`; the engine refuses
    it once `expires_at` (wire date-time, the engine's clock) has passed, for another
    person, terminal or institution, or after the card was revoked."""

    cred_ref: str
    expires_at: str


class Output(Out, frozen=True, kw_only=True):
    baseinfo: BaseInfo
    insuinfo: list[InsuInfo]
    idetinfo: list[IdetInfo]
    yk_card_proof: CardProof | None = None
