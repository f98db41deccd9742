"""EMV (PBOC debit/credit application) cryptography for the cash part of a settlement:
ICC master key derivation (option A), common session key derivation, ARQC generation
and verification, ARPC methods 1 and 2 (EMV 4.3 Book 2, §8 and Annex A1).

Invariants:
- issuer master keys, ICC master keys and session keys are double-length 3DES keys
  (`KeyLengthError`/`KeyTypeError` otherwise); derived keys carry odd parity, as EMV
  and HSMs produce them (parity never changes a cryptogram);
- PAN and PSN are digit strings, checked before use (`DataFormatError`); lengths of
  ATC, ARQC, ARC and CSU are exact (`DataLengthError`);
- ARQC verification compares in constant time (`VerificationFailed`).

The PBOC 3.0 SM4 variants (JR/T 0025.17) are not implemented here: DOMAIN.md §3.5
asks for them to be checked against the standard first.
"""

from __future__ import annotations

from hsm.cardauth import tdes_diversify
from hsm.ciphers import encrypt_ecb
from hsm.errors import DataFormatError, DataLengthError
from hsm.keys import SecretKey, require_double_length_tdes, tdes, with_odd_parity
from hsm.mac import iso9797_mac3, verify_equal

PAN_DIGITS_MIN = 12
PAN_DIGITS_MAX = 19
AC_BYTES = 8
ARPC1_BYTES = 8
ARPC2_BYTES = 4


def _digits(value: str, what: str, lengths: range) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise DataFormatError(f"{what} must be a string of decimal digits")
    if len(value) not in lengths:
        allowed = (
            f"{lengths.start}" if len(lengths) == 1 else f"{lengths.start}..{lengths.stop - 1}"
        )
        raise DataLengthError(f"{what} must be {allowed} digits, got {len(value)}")
    return value


def _exact(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise DataLengthError(f"{what} must be {length} bytes, got {got}")
    return bytes(value)


def derive_icc_master_key_a(issuer_master_key: SecretKey, pan: str, psn: str = "00") -> SecretKey:
    """EMV Book 2 A1.4.1 option A: Y = the rightmost 16 digits of PAN || PSN (zero
    padded on the left), MK = 3DES(IMK, Y) || 3DES(IMK, Y XOR FF..FF), odd parity."""
    require_double_length_tdes(issuer_master_key, operation="ICC master key derivation")
    pan = _digits(pan, "PAN", range(PAN_DIGITS_MIN, PAN_DIGITS_MAX + 1))
    psn = _digits(psn, "PAN sequence number", range(2, 3))
    y = bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))
    return tdes_diversify(issuer_master_key, y)


def derive_common_session_key(icc_master_key: SecretKey, r: bytes) -> SecretKey:
    """EMV Book 2 A1.3.1 common session key derivation from an 8-byte diversification
    value R: SK = 3DES(MK, R with byte 3 = F0) || 3DES(MK, R with byte 3 = 0F)."""
    require_double_length_tdes(icc_master_key, operation="common session key derivation")
    r_left = bytearray(_exact(r, 8, "diversification value R"))
    r_right = bytearray(r_left)
    r_left[2] = 0xF0
    r_right[2] = 0x0F
    return tdes(with_odd_parity(encrypt_ecb(icc_master_key, bytes(r_left + r_right))))


def derive_ac_session_key(icc_master_key: SecretKey, atc: bytes) -> SecretKey:
    """The application-cryptogram session key for a transaction counter: R = ATC ||
    00 00 00 00 00 00, i.e. SK = 3DES(MK, ATC||F0||00..) || 3DES(MK, ATC||0F||00..)."""
    return derive_common_session_key(icc_master_key, _exact(atc, 2, "ATC (tag 9F36)") + bytes(6))


def generate_ac(session_key: SecretKey, data: bytes, *, padding: int = 2) -> bytes:
    """ARQC / TC / AAC: ISO 9797-1 MAC algorithm 3 over the transaction data (CDOL1
    values in order, DOMAIN.md §3.5), padding method 2 as in EMV Book 2 A1.2."""
    require_double_length_tdes(session_key, operation="application cryptogram")
    if not isinstance(data, bytes | bytearray) or not data:
        raise DataLengthError("application cryptogram data must be non-empty bytes")
    return iso9797_mac3(session_key, bytes(data), padding=padding)


def verify_arqc(session_key: SecretKey, data: bytes, arqc: bytes, *, padding: int = 2) -> None:
    """Recompute the ARQC and compare in constant time; `VerificationFailed`."""
    _exact(arqc, AC_BYTES, "ARQC")
    verify_equal(generate_ac(session_key, data, padding=padding), arqc, what="ARQC")


def arpc_method_1(session_key: SecretKey, arqc: bytes, arc: bytes) -> bytes:
    """EMV Book 2 §8.2.1: ARPC = 3DES(SK, ARQC XOR (ARC || 00 00 00 00 00 00)).
    Tag 91 (issuer authentication data) is then ARPC || ARC."""
    require_double_length_tdes(session_key, operation="ARPC method 1")
    arqc = _exact(arqc, AC_BYTES, "ARQC")
    arc = _exact(arc, 2, "authorisation response code")
    return encrypt_ecb(session_key, bytes(a ^ b for a, b in zip(arqc, arc + bytes(6), strict=True)))


def arpc_method_2(
    session_key: SecretKey, arqc: bytes, csu: bytes, proprietary_data: bytes = b""
) -> bytes:
    """EMV Book 2 §8.2.2: ARPC = the leftmost 4 bytes of ISO 9797-1 MAC algorithm 3
    (padding 2) over ARQC || CSU || proprietary authentication data (0-8 bytes).
    Tag 91 is then ARPC || CSU || proprietary data."""
    require_double_length_tdes(session_key, operation="ARPC method 2")
    arqc = _exact(arqc, AC_BYTES, "ARQC")
    csu = _exact(csu, 4, "card status update")
    if not isinstance(proprietary_data, bytes | bytearray) or len(proprietary_data) > 8:
        got = (
            len(proprietary_data)
            if isinstance(proprietary_data, bytes | bytearray)
            else type(proprietary_data).__name__
        )
        raise DataLengthError(f"proprietary authentication data must be 0..8 bytes, got {got}")
    message = arqc + csu + bytes(proprietary_data)
    return iso9797_mac3(session_key, message, padding=2, mac_bytes=ARPC2_BYTES)
