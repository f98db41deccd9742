"""E-card QR tokens: the text a patient's phone shows and a terminal scans.

The e-card QR token is yikatong's own design (the national format is not public,
DOMAIN.md §2.11/§3.6):

    YKEC1.<base64url(payload)>.<base64url(signature)>      (no padding, ≤512 chars)

payload = the JSON array [token_id, certno, psn_name, insuplc_admdvs, iat, exp]
(unix seconds; valid for ECARD_TOKEN_LIFETIME_S), signature = ECDSA P-256 / SHA-256
(DER) by the issuing platform over the ASCII text "YKEC1.<base64url(payload)>", so
the version prefix is signed too. `decode_ecard_token` checks only the form; the
engine checks signature, time window, id and single use.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from msgspec import Meta, Struct

ECARD_TOKEN_VERSION: Final = "YKEC1"
ECARD_TOKEN_LIFETIME_S: Final = 60
ECARD_QR_CHARS_MAX: Final = 512
ECARD_PAYLOAD_CHARS_MAX: Final = 384
# A DER ECDSA P-256 signature is at most 72 bytes (two 33-byte INTEGERs + headers).
ECARD_SIGNATURE_BYTES_MAX: Final = 72
ECARD_SIGNATURE_BYTES_MIN: Final = 8
ECARD_TOKEN_ID_RE: Final = re.compile(r"^[A-Za-z0-9]{16,40}$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_UNIX_S_MAX = 2**40  # far beyond any real date, small enough for every database type


class EcardTokenError(ValueError):
    """The QR text is not a well-formed yikatong e-card token; the message names the
    part that is wrong (never the person's data)."""


class EcardPayload(Struct, frozen=True, forbid_unknown_fields=True, array_like=True):
    """What the issuing platform vouches for, valid from `iat` to `exp` (unix s)."""

    token_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{16,40}$")]
    certno: Annotated[str, Meta(min_length=1, max_length=50)]
    psn_name: Annotated[str, Meta(min_length=1, max_length=50)]
    insuplc_admdvs: Annotated[str, Meta(pattern=r"^[0-9]{6}$")]
    iat: Annotated[int, Meta(ge=0, le=_UNIX_S_MAX)]
    exp: Annotated[int, Meta(ge=0, le=_UNIX_S_MAX)]

    def __repr__(self) -> str:
        return (
            f"EcardPayload(token_id={self.token_id[:6]}..., region={self.insuplc_admdvs},"
            f" iat={self.iat}, exp={self.exp})"
        )


@dataclass(frozen=True)
class EcardToken:
    payload: EcardPayload
    signed_part: bytes  # the ASCII text the signature covers
    signature: bytes  # DER ECDSA P-256

    def __repr__(self) -> str:
        return f"EcardToken({self.payload!r})"


_payload_decoder = msgspec.json.Decoder(EcardPayload)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, part: str) -> bytes:
    if not _B64URL_RE.match(text):
        raise EcardTokenError(f"{part}: not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise EcardTokenError(f"{part}: not base64url") from None
    if _b64(raw) != text:  # one text per byte string: no stray trailing bits
        raise EcardTokenError(f"{part}: not canonical base64url")
    return raw


def ecard_signing_input(payload: EcardPayload) -> bytes:
    """The bytes the platform signs: "YKEC1." + base64url(payload JSON array)."""
    if payload.exp <= payload.iat:
        raise EcardTokenError("payload: exp must be after iat")
    return f"{ECARD_TOKEN_VERSION}.{_b64(msgspec.json.encode(payload))}".encode("ascii")


def encode_ecard_token(payload: EcardPayload, signature: bytes) -> str:
    """The QR text of a signed payload."""
    if not ECARD_SIGNATURE_BYTES_MIN <= len(signature) <= ECARD_SIGNATURE_BYTES_MAX:
        raise EcardTokenError("signature: not a DER ECDSA P-256 signature length")
    text = f"{ecard_signing_input(payload).decode('ascii')}.{_b64(signature)}"
    if len(text) > ECARD_QR_CHARS_MAX:
        raise EcardTokenError(f"token: longer than {ECARD_QR_CHARS_MAX} characters")
    return text


def decode_ecard_token(text: str) -> EcardToken:
    """Parse the QR text; `EcardTokenError` for anything that is not a token of this
    version. The signature is not checked here (that needs the HSM)."""
    if len(text) > ECARD_QR_CHARS_MAX:
        raise EcardTokenError(f"token: longer than {ECARD_QR_CHARS_MAX} characters")
    parts = text.split(".")
    if len(parts) != 3:
        raise EcardTokenError("token: expected three dot-separated parts")
    version, payload_b64, signature_b64 = parts
    if version != ECARD_TOKEN_VERSION:
        raise EcardTokenError(f"version: expected {ECARD_TOKEN_VERSION}")
    if len(payload_b64) > ECARD_PAYLOAD_CHARS_MAX:
        raise EcardTokenError(f"payload: longer than {ECARD_PAYLOAD_CHARS_MAX} characters")
    raw = _unb64(payload_b64, "payload")
    try:
        payload = _payload_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise EcardTokenError(f"payload: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec lets bad UTF-8 through
        raise EcardTokenError("payload: not a UTF-8 JSON array") from None
    if payload.exp <= payload.iat:
        raise EcardTokenError("payload: exp must be after iat")
    signature = _unb64(signature_b64, "signature")
    if not ECARD_SIGNATURE_BYTES_MIN <= len(signature) <= ECARD_SIGNATURE_BYTES_MAX:
        raise EcardTokenError("signature: not a DER ECDSA P-256 signature length")
    try:
        decode_dss_signature(signature)
    except ValueError:
        raise EcardTokenError("signature: not a DER ECDSA signature") from None
    return EcardToken(payload, f"{version}.{payload_b64}".encode("ascii"), signature)
