"""Field types of the settlement protocol with their national lengths and formats.

Every string has a maximum length (DOMAIN.md §2); codes have exact patterns. A
violation is a msgspec ValidationError whose path names the field, which the engine
turns into `err_msg`. Money on the wire is yuan as a JSON number or string, decoded as
`Decimal` (never float) and converted to integer fen by `settlement.money`.
"""

from __future__ import annotations

import decimal
from typing import Annotated

from msgspec import Meta

Admdvs = Annotated[str, Meta(pattern=r"^[0-9]{6}$", description="6-digit region (医保区划)")]
OptAdmdvs = Annotated[str, Meta(pattern=r"^([0-9]{6})?$", description="6-digit region or empty")]
FixmedinsCode = Annotated[
    str, Meta(pattern=r"^[A-Z0-9]{12}$", description="12-character institution code")
]
MsgId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{1,30}$", description="sender message id (≤30)")]
DateTime = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
        description="yyyy-MM-dd HH:mm:ss",
    ),
]
Id30 = Annotated[str, Meta(min_length=1, max_length=30)]
OptId30 = Annotated[str, Meta(max_length=30)]
Name50 = Annotated[str, Meta(max_length=50)]
Name100 = Annotated[str, Meta(max_length=100)]
Name200 = Annotated[str, Meta(max_length=200)]
Text500 = Annotated[str, Meta(max_length=500)]
Code3 = Annotated[str, Meta(max_length=3)]
Code6 = Annotated[str, Meta(max_length=6)]
Code10 = Annotated[str, Meta(max_length=10)]
Code20 = Annotated[str, Meta(max_length=20)]
Code50 = Annotated[str, Meta(max_length=50)]
Flag = Annotated[str, Meta(pattern=r"^[01]$", description="0 or 1")]
Insutype = Annotated[str, Meta(pattern=r"^[0-9]{3}$", description="险种类型, e.g. 310, 390")]
MedType = Annotated[str, Meta(pattern=r"^[0-9]{2,6}$", description="医疗类别, e.g. 11")]
CertType = Annotated[str, Meta(pattern=r"^0[1-3]$", description="01 e-cert, 02 ID, 03 card")]
# yikatong extension: the card proof a 1101 by card or e-card answered
# (`yk_card_proof.cred_ref`), carried by 2201 / 2207 with mdtrt_cert_type 01 or 03.
CredRef = Annotated[
    str, Meta(pattern=r"^([0-9a-f]{32})?$", description="1101's yk_card_proof.cred_ref")
]
# Yuan with at most 2 decimals; the decimal-places rule is checked when converting to fen
# so that the error can name the field.
Yuan = Annotated[decimal.Decimal, Meta(description="amount in yuan, at most 2 decimals")]
Quantity = Annotated[decimal.Decimal, Meta(description="quantity, at most 4 decimals")]
UnitPrice = Annotated[decimal.Decimal, Meta(description="unit price in yuan, at most 6 decimals")]
# Card and e-card authentication (9301, 1101 by card / e-card). Hex is accepted in
# either case; the engine compares it case-insensitively.
CardSn = Annotated[
    str,
    Meta(pattern=r"^[0-9A-Fa-f]{32}$", description="卡识别码 card_sn: 16 bytes as 32 hex digits"),
]
OptCardSn = Annotated[
    str, Meta(pattern=r"^([0-9A-Fa-f]{32})?$", description="card_sn (32 hex digits) or empty")
]
Hex8Bytes = Annotated[
    str, Meta(pattern=r"^[0-9A-Fa-f]{16}$", description="8 bytes as 16 hex digits")
]
OptHex8Bytes = Annotated[
    str, Meta(pattern=r"^([0-9A-Fa-f]{16})?$", description="8 bytes as 16 hex digits, or empty")
]
EcardQr = Annotated[
    str,
    Meta(
        max_length=512,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="the e-card QR text (YKEC1.<payload>.<signature>, base64url), ≤512",
    ),
]
