"""Key derivations and composed MACs inside a PKCS#11 token, for the `Pkcs11Hsm`
backend (hsm.pkcs11). Each function takes the worker's raw session (hsm.pkcs11_raw)
and object handles, and runs on the worker's token thread (hsm.pkcs11_worker).

Derived keys (card keys, process keys, EMV ICC master and session keys, terminal MAC
keys) are made with C_DeriveKey from the master key object, never by computing a key
value on the host:
    3DES  CKM_DES3_ECB_ENCRYPT_DATA: the new key's value is the ECB encryption of the
          derivation data under the base key, with odd parity set by the token (the
          same construction and parity as hsm.cardauth / hsm.emv);
    AES   CKM_AES_ECB_ENCRYPT_DATA into a 32-byte generic secret (hsm.terminalkeys).
They are session objects, SENSITIVE and not EXTRACTABLE, with only the capabilities
their use needs (the card key and the ICC master key may derive, the others only
encrypt or sign), and are destroyed before the function returns (`_transient`),
whatever happens.

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

from collections.abc import Iterator
from contextlib import contextmanager

from pkcs11 import Attribute, KeyType, Mechanism

from hsm import cardauth, terminalkeys
from hsm.errors import DataFormatError, DataLengthError
from hsm.keys import Algorithm
from hsm.mac import pad_method_2
from hsm.pkcs11_raw import RawSession, Template, derived_key_template

PAN_DIGITS_MIN = 12
PAN_DIGITS_MAX = 19
ATC_BYTES = 2
AC_BYTES = 8
ARC_BYTES = 2
TERMINAL_KEY_BYTES = 32

# Templates of the derived session keys, built once.
_DES2_DERIVING = derived_key_template(KeyType.DES2, Attribute.ENCRYPT, Attribute.DERIVE)
_DES2_ENCRYPTING = derived_key_template(KeyType.DES2, Attribute.ENCRYPT)
_DES3_ENCRYPTING = derived_key_template(KeyType.DES3, Attribute.ENCRYPT)
_HMAC_SIGNING = derived_key_template(
    KeyType.GENERIC_SECRET, Attribute.SIGN, value_len=TERMINAL_KEY_BYTES
)


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
def _transient(raw: RawSession, handle: int) -> Iterator[int]:
    """A derived session object, destroyed on the way out."""
    try:
        yield handle
    finally:
        raw.destroy(handle)


def derive_tdes(raw: RawSession, base: int, data: bytes, template: Template) -> int:
    """A new DES2 (16-byte data) or DES3 (24-byte data) session key whose value is
    3DES-ECB(base, data) with odd parity, made inside the token; its handle."""
    return raw.derive_encrypt_data(Mechanism.DES3_ECB_ENCRYPT_DATA, base, data, template)


def _diversify(raw: RawSession, base: int, block: bytes, template: Template) -> int:
    """The double-length key 3DES(base, D) || 3DES(base, ~D) (hsm.cardauth)."""
    return derive_tdes(raw, base, block + _invert(block), template)


def card_auth_cryptogram(
    raw: RawSession, master: int, card_sn: bytes, process_factor: bytes, challenge: bytes
) -> bytes:
    """hsm.cardauth's 3DES cryptogram with card and process keys derived in the token:
    two C_DeriveKey, one C_Encrypt, two C_DestroyObject."""
    block = cardauth.diversification_block(card_sn, Algorithm.TDES)
    factor = exact(process_factor, cardauth.PROCESS_FACTOR_BYTES, "process factor")
    challenge = exact(challenge, cardauth.CHALLENGE_BYTES, "challenge")
    with (
        _transient(raw, _diversify(raw, master, block, _DES2_DERIVING)) as card_key,
        _transient(raw, _diversify(raw, card_key, factor, _DES2_ENCRYPTING)) as process_key,
    ):
        return raw.encrypt(process_key, Mechanism.DES3_ECB, challenge)


def _digits(value: str, what: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise DataFormatError(f"{what} must be a string of decimal digits")
    if not low <= len(value) <= high:
        allowed = str(low) if low == high else f"{low}..{high}"
        raise DataLengthError(f"{what} must be {allowed} digits, got {len(value)}")
    return value


@contextmanager
def _emv_keys(
    raw: RawSession, issuer_master: int, pan: str, psn: str, atc: bytes
) -> Iterator[tuple[int, int, bytes]]:
    """The ICC master key (EMV option A) and AC session key derived in the token, as
    hsm.emv computes them; also the session key's left derivation block."""
    pan = _digits(pan, "PAN", PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    psn = _digits(psn, "PAN sequence number", 2, 2)
    y = bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))
    r = exact(atc, ATC_BYTES, "ATC (tag 9F36)") + bytes(6)
    r_left, r_right = bytearray(r), bytearray(r)
    r_left[2], r_right[2] = 0xF0, 0x0F
    with (
        _transient(raw, _diversify(raw, issuer_master, y, _DES2_DERIVING)) as icc_master,
        _transient(
            raw, derive_tdes(raw, icc_master, bytes(r_left + r_right), _DES2_ENCRYPTING)
        ) as session_key,
    ):
        yield icc_master, session_key, bytes(r_left)


def arqc(raw: RawSession, issuer_master: int, pan: str, psn: str, atc: bytes, data: bytes) -> bytes:
    """The application cryptogram (composed retail MAC under the session key)."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise DataLengthError("application cryptogram data must be non-empty bytes")
    with _emv_keys(raw, issuer_master, pan, psn, atc) as (icc_master, session_key, r_left):
        # K1||K1||K1 of the session key: its left derivation block three times.
        k1 = derive_tdes(raw, icc_master, r_left * 3, _DES3_ENCRYPTING)
        with _transient(raw, k1):
            return retail_mac(raw, k1, session_key, bytes(data))


def arpc_method_1(
    raw: RawSession, issuer_master: int, pan: str, psn: str, atc: bytes, arqc: bytes, arc: bytes
) -> bytes:
    """EMV Book 2 §8.2.1: 3DES-ECB(SK, ARQC XOR (ARC || 00..)) inside the token."""
    block = _xor(
        exact(arqc, AC_BYTES, "ARQC"),
        exact(arc, ARC_BYTES, "authorisation response code") + bytes(6),
    )
    with _emv_keys(raw, issuer_master, pan, psn, atc) as (_, session_key, _):
        return raw.encrypt(session_key, Mechanism.DES3_ECB, block)


def arpc_method_2(
    raw: RawSession,
    issuer_master: int,
    pan: str,
    psn: str,
    atc: bytes,
    arqc: bytes,
    csu: bytes,
    proprietary: bytes,
) -> bytes:
    """EMV Book 2 §8.2.2: leftmost 4 bytes of the (composed) retail MAC under the
    session key over ARQC || CSU || proprietary data (0-8 bytes)."""
    message = exact(arqc, AC_BYTES, "ARQC") + exact(csu, 4, "card status update")
    if not isinstance(proprietary, bytes | bytearray) or len(proprietary) > 8:
        raise DataLengthError("proprietary authentication data must be 0..8 bytes")
    with _emv_keys(raw, issuer_master, pan, psn, atc) as (icc_master, session_key, r_left):
        k1 = derive_tdes(raw, icc_master, r_left * 3, _DES3_ENCRYPTING)
        with _transient(raw, k1):
            return retail_mac(raw, k1, session_key, message + bytes(proprietary))[:4]


def retail_mac(raw: RawSession, k1: int, key: int, data: bytes) -> bytes:
    """ISO 9797-1 MAC algorithm 3, padding method 2, composed as the module docstring
    says: `k1` is the K1||K1||K1 object, `key` the K1||K2 object."""
    padded = pad_method_2(bytes(data), 8)
    chain = bytes(8)
    if len(padded) > 8:
        chain = raw.encrypt(k1, Mechanism.DES3_CBC, padded[:-8], iv=bytes(8))[-8:]
    return raw.encrypt(key, Mechanism.DES3_ECB, _xor(chain, padded[-8:]))


def terminal_hmac(raw: RawSession, master: int, terminal_id: str, message: bytes) -> bytes:
    """HMAC-SHA256 under the per-terminal key (hsm.terminalkeys), derived in the token
    with CKM_AES_ECB_ENCRYPT_DATA into a generic secret used for CKM_SHA256_HMAC."""
    data = terminalkeys.derivation_data(terminal_id)
    key = raw.derive_encrypt_data(Mechanism.AES_ECB_ENCRYPT_DATA, master, data, _HMAC_SIGNING)
    with _transient(raw, key):
        return raw.sign(key, Mechanism.SHA256_HMAC, bytes(message))
