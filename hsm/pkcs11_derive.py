"""Key derivations and composed MACs inside a PKCS#11 token, for the `Pkcs11Hsm`
backend (hsm.pkcs11). Each function takes key objects of the worker's session and runs
on the worker's token thread (hsm.pkcs11_worker).

Derived keys (card keys, process keys, EMV ICC master and session keys, terminal MAC
keys) are made with C_DeriveKey from the master key object, never by computing a key
value on the host:
    3DES  CKM_DES3_ECB_ENCRYPT_DATA: the new key's value is the ECB encryption of the
          derivation data under the base key, with odd parity set by the token (the
          same construction and parity as hsm.cardauth / hsm.emv);
    AES   CKM_AES_ECB_ENCRYPT_DATA into a 32-byte generic secret (hsm.terminalkeys).
They are session objects, SENSITIVE and not EXTRACTABLE, and are destroyed before the
function returns (`_transient`), whatever happens.

ISO 9797-1 MAC algorithm 3 (retail MAC): SoftHSM2 has no mechanism for it (TOOLCHAIN.md
§2.2: CKM_DES3_MAC and CKM_DES3_MAC_GENERAL are refused) and no single DES under
OpenSSL 3. It is composed: 3DES-CBC (zero IV) under the K1||K1||K1 object (single DES
under K1) over every padded block but the last, then 3DES-ECB under K1||K2 over the last
block XOR the chaining value. Two costs, which is why the backend only does this when
asked to (`allow_composed_retail_mac`):
    - the chaining value, a single-DES CBC-MAC under K1, passes through host memory:
      someone who can read this process's memory gets single-DES known pairs under K1
      and can search K1 in 2^56 (then K2 likewise). For EMV the exposed K1 belongs to a
      per-transaction session key, which is one-way from the ICC master key; for a
      stored MAC key it is the long-term key.
    - a stored key needs a K1||K1||K1 companion object, i.e. a single-DES encryption
      oracle on the token for anyone holding the PIN (hsm.pkcs11_keys).
A production HSM performs the retail MAC inside with its vendor mechanism.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.constants import DEFAULT

from hsm import cardauth, terminalkeys
from hsm.errors import DataFormatError, DataLengthError
from hsm.keys import Algorithm
from hsm.mac import pad_method_2

PAN_DIGITS_MIN = 12
PAN_DIGITS_MAX = 19
ATC_BYTES = 2
AC_BYTES = 8
ARC_BYTES = 2
TERMINAL_KEY_BYTES = 32


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def exact(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise DataLengthError(f"{what} must be {length} bytes, got {got}")
    return bytes(value)


@contextmanager
def _transient(key: Any) -> Iterator[Any]:
    """A derived session object, destroyed on the way out."""
    try:
        yield key
    finally:
        key.destroy()


def derive_tdes(base: Any, data: bytes, *, key_type: Any, capabilities: Any) -> Any:
    """A new DES2 (16-byte data) or DES3 (24-byte data) session key whose value is
    3DES-ECB(base, data) with odd parity, made inside the token."""
    # python-pkcs11 builds CK_KEY_DERIVATION_STRING_DATA only for the AES mechanism; the
    # struct {CK_BYTE_PTR pData; CK_ULONG ulLen} is packed here and `buf` kept alive
    # until C_DeriveKey returns. CKA_VALUE_LEN is dropped: SoftHSM refuses it for 3DES.
    buf = ctypes.create_string_buffer(data, len(data))
    param = struct.pack("PL", ctypes.addressof(buf), len(data))
    key = base.derive_key(
        key_type,
        len(data) * 8,
        mechanism=Mechanism.DES3_ECB_ENCRYPT_DATA,
        mechanism_param=param,
        capabilities=capabilities,
        template={
            Attribute.VALUE_LEN: DEFAULT,
            Attribute.TOKEN: False,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
        },
    )
    del buf
    return key


def _diversify(base: Any, block: bytes, *, derive: bool) -> Any:
    """The double-length key 3DES(base, D) || 3DES(base, ~D) (hsm.cardauth)."""
    capabilities = MechanismFlag.ENCRYPT | (MechanismFlag.DERIVE if derive else 0)
    return derive_tdes(
        base, block + _invert(block), key_type=KeyType.DES2, capabilities=capabilities
    )


def card_auth_cryptogram(
    master: Any, card_sn: bytes, process_factor: bytes, challenge: bytes
) -> bytes:
    """hsm.cardauth's 3DES cryptogram with card and process keys derived in the token."""
    block = cardauth.diversification_block(card_sn, Algorithm.TDES)
    factor = exact(process_factor, cardauth.PROCESS_FACTOR_BYTES, "process factor")
    challenge = exact(challenge, cardauth.CHALLENGE_BYTES, "challenge")
    with (
        _transient(_diversify(master, block, derive=True)) as card_key,
        _transient(_diversify(card_key, factor, derive=False)) as process_key,
    ):
        return bytes(process_key.encrypt(challenge, mechanism=Mechanism.DES3_ECB))


def _digits(value: str, what: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise DataFormatError(f"{what} must be a string of decimal digits")
    if not low <= len(value) <= high:
        allowed = str(low) if low == high else f"{low}..{high}"
        raise DataLengthError(f"{what} must be {allowed} digits, got {len(value)}")
    return value


@contextmanager
def _emv_keys(
    issuer_master: Any, pan: str, psn: str, atc: bytes
) -> Iterator[tuple[Any, Any, bytes]]:
    """The ICC master key (EMV option A) and AC session key derived in the token, as
    hsm.emv computes them; also the session key's left derivation block."""
    pan = _digits(pan, "PAN", PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    psn = _digits(psn, "PAN sequence number", 2, 2)
    y = bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))
    r = exact(atc, ATC_BYTES, "ATC (tag 9F36)") + bytes(6)
    r_left, r_right = bytearray(r), bytearray(r)
    r_left[2], r_right[2] = 0xF0, 0x0F
    encrypt = MechanismFlag.ENCRYPT
    with (
        _transient(_diversify(issuer_master, y, derive=True)) as icc_master,
        _transient(
            derive_tdes(
                icc_master, bytes(r_left + r_right), key_type=KeyType.DES2, capabilities=encrypt
            )
        ) as session_key,
    ):
        yield icc_master, session_key, bytes(r_left)


def arqc(issuer_master: Any, pan: str, psn: str, atc: bytes, data: bytes) -> bytes:
    """The application cryptogram (composed retail MAC under the session key)."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise DataLengthError("application cryptogram data must be non-empty bytes")
    with _emv_keys(issuer_master, pan, psn, atc) as (icc_master, session_key, r_left):
        # K1||K1||K1 of the session key: its left derivation block three times.
        k1 = derive_tdes(
            icc_master, r_left * 3, key_type=KeyType.DES3, capabilities=MechanismFlag.ENCRYPT
        )
        with _transient(k1):
            return retail_mac(k1, session_key, bytes(data))


def arpc_method_1(
    issuer_master: Any, pan: str, psn: str, atc: bytes, arqc: bytes, arc: bytes
) -> bytes:
    """EMV Book 2 §8.2.1: 3DES-ECB(SK, ARQC XOR (ARC || 00..)) inside the token."""
    block = _xor(
        exact(arqc, AC_BYTES, "ARQC"),
        exact(arc, ARC_BYTES, "authorisation response code") + bytes(6),
    )
    with _emv_keys(issuer_master, pan, psn, atc) as (_, session_key, _):
        return bytes(session_key.encrypt(block, mechanism=Mechanism.DES3_ECB))


def arpc_method_2(
    issuer_master: Any, pan: str, psn: str, atc: bytes, arqc: bytes, csu: bytes, proprietary: bytes
) -> bytes:
    """EMV Book 2 §8.2.2: leftmost 4 bytes of the (composed) retail MAC under the
    session key over ARQC || CSU || proprietary data (0-8 bytes)."""
    message = exact(arqc, AC_BYTES, "ARQC") + exact(csu, 4, "card status update")
    if not isinstance(proprietary, bytes | bytearray) or len(proprietary) > 8:
        raise DataLengthError("proprietary authentication data must be 0..8 bytes")
    with _emv_keys(issuer_master, pan, psn, atc) as (icc_master, session_key, r_left):
        k1 = derive_tdes(
            icc_master, r_left * 3, key_type=KeyType.DES3, capabilities=MechanismFlag.ENCRYPT
        )
        with _transient(k1):
            return retail_mac(k1, session_key, message + bytes(proprietary))[:4]


def retail_mac(k1: Any, key: Any, data: bytes) -> bytes:
    """ISO 9797-1 MAC algorithm 3, padding method 2, composed as the module docstring
    says: `k1` is the K1||K1||K1 object, `key` the K1||K2 object."""
    padded = pad_method_2(bytes(data), 8)
    chain = bytes(8)
    if len(padded) > 8:
        cbc = bytes(k1.encrypt(padded[:-8], mechanism=Mechanism.DES3_CBC, mechanism_param=bytes(8)))
        chain = cbc[-8:]
    return bytes(key.encrypt(_xor(chain, padded[-8:]), mechanism=Mechanism.DES3_ECB))


def terminal_hmac(master: Any, terminal_id: str, message: bytes) -> bytes:
    """HMAC-SHA256 under the per-terminal key (hsm.terminalkeys), derived in the token
    with CKM_AES_ECB_ENCRYPT_DATA into a generic secret used for CKM_SHA256_HMAC."""
    data = terminalkeys.derivation_data(terminal_id)
    key = master.derive_key(
        KeyType.GENERIC_SECRET,
        TERMINAL_KEY_BYTES * 8,
        mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
        mechanism_param=data,
        capabilities=MechanismFlag.SIGN,
        template={Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    with _transient(key):
        return bytes(key.sign(bytes(message), mechanism=Mechanism.SHA256_HMAC))
