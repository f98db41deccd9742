"""Social security card keys and authentication cryptograms: "一卡一密" card-key
diversification from the card identification code (card_sn, EF05 record 01) and the
INTERNAL / EXTERNAL AUTHENTICATE cryptograms (DOMAIN.md §3.3).

The terminal specification's own rule (§10.3 of the standard) is not public in the
sources we read (DOMAIN.md §7), so this module fixes one explicit rule, used by both
the virtual card and the engine's HSM so that they always agree:

    card_sn       16 bytes, e.g. 330300D15600000599110145FFFFFFFF: region (3 bytes),
                  RID D156000005 (5 bytes), chip serial (4 bytes), FFFFFFFF padding.
    3DES card key D = card_sn[8:16] (the last 8 bytes: serial || padding)
                  card key = 3DES-ECB(MK, D) || 3DES-ECB(MK, D XOR FF..FF), odd parity
                  (the EMV Book 2 A1.4.1 construction with card_sn in place of PAN).
                  The region bytes are left out on purpose: under the three-tier key
                  system each region's master key already differs.
    SM4 card key  D = card_sn (all 16 bytes); card key = SM4-ECB(MK, D).

    process key   from the card key and an 8-byte process factor P (the card's or the
                  terminal's GET CHALLENGE): 3DES: 3DES(CK, P) || 3DES(CK, ~P);
                  SM4: SM4(CK, P || ~P).
    cryptogram    8 bytes over an 8-byte challenge C under the process key:
                  3DES: 3DES-ECB(PK, C); SM4: leftmost 8 bytes of
                  SM4-ECB(PK, C || 80 00 00 00 00 00 00 00) (ISO 9797-1 padding 2).

INTERNAL AUTHENTICATE (card proves itself) and EXTERNAL AUTHENTICATE (terminal/HSM
proves itself, RKSSSE on generation-3 cards) compute the same function; they differ
only in the key. Invariant the caller must keep: the two keys are diversified from
different master keys, otherwise a card could be used to answer its own external
challenge (reflection).
"""

from __future__ import annotations

from hsm.ciphers import encrypt_ecb
from hsm.errors import DataLengthError
from hsm.keys import Algorithm, SecretKey, require, sm4, tdes, with_odd_parity
from hsm.mac import pad_method_2, verify_equal

CARD_SN_BYTES = 16
PROCESS_FACTOR_BYTES = 8
CHALLENGE_BYTES = 8
CRYPTOGRAM_BYTES = 8


def _check(value: bytes, length: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != length:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise DataLengthError(f"{what} must be {length} bytes, got {got}")
    return bytes(value)


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def tdes_diversify(master: SecretKey, block: bytes) -> SecretKey:
    """Double-length key 3DES(MK, D) || 3DES(MK, ~D) for an 8-byte D, odd parity."""
    require(master, Algorithm.TDES, operation="3DES key diversification")
    d = _check(block, 8, "diversification block")
    return tdes(with_odd_parity(encrypt_ecb(master, d + _invert(d))))


def diversification_block(card_sn: bytes, algorithm: Algorithm) -> bytes:
    """The bytes of card_sn that enter diversification (see the module docstring)."""
    sn = _check(card_sn, CARD_SN_BYTES, "card_sn (card identification code)")
    return sn[8:] if algorithm is Algorithm.TDES else sn


def derive_card_key(master: SecretKey, card_sn: bytes) -> SecretKey:
    """The card's own key ("一卡一密") from the issuer master key and card_sn.

    3DES masters (16 or 24 bytes) give a 16-byte 3DES card key; SM4 masters a
    16-byte SM4 card key; any other key type is a `KeyTypeError`."""
    require(master, Algorithm.TDES, Algorithm.SM4, operation="card key diversification")
    d = diversification_block(card_sn, master.algorithm)
    if master.algorithm is Algorithm.TDES:
        return tdes_diversify(master, d)
    return sm4(encrypt_ecb(master, d))


def derive_process_key(card_key: SecretKey, process_factor: bytes) -> SecretKey:
    """The per-authentication process (session) key from an 8-byte process factor."""
    require(card_key, Algorithm.TDES, Algorithm.SM4, operation="process key derivation")
    p = _check(process_factor, PROCESS_FACTOR_BYTES, "process factor")
    if card_key.algorithm is Algorithm.TDES:
        return tdes_diversify(card_key, p)
    return sm4(encrypt_ecb(card_key, p + _invert(p)))


def auth_cryptogram(card_key: SecretKey, process_factor: bytes, challenge: bytes) -> bytes:
    """The 8-byte authentication cryptogram over `challenge` (see module docstring)."""
    process_key = derive_process_key(card_key, process_factor)
    c = _check(challenge, CHALLENGE_BYTES, "challenge")
    if process_key.algorithm is Algorithm.TDES:
        return encrypt_ecb(process_key, c)
    return encrypt_ecb(process_key, pad_method_2(c, 16))[:CRYPTOGRAM_BYTES]


def internal_auth_cryptogram(card_key: SecretKey, process_factor: bytes, challenge: bytes) -> bytes:
    """What the card answers to INTERNAL AUTHENTICATE (process factor || challenge)
    with its internal-authentication key, and what the engine's HSM recomputes."""
    return auth_cryptogram(card_key, process_factor, challenge)


def external_auth_cryptogram(card_key: SecretKey, process_factor: bytes, challenge: bytes) -> bytes:
    """What the HSM computes for EXTERNAL AUTHENTICATE over the card's challenge,
    under the card's external-authentication key, and what the card checks."""
    return auth_cryptogram(card_key, process_factor, challenge)


def verify_auth_cryptogram(
    card_key: SecretKey, process_factor: bytes, challenge: bytes, cryptogram: bytes
) -> None:
    """Constant-time check of a presented 8-byte cryptogram; `VerificationFailed`."""
    _check(cryptogram, CRYPTOGRAM_BYTES, "cryptogram")
    verify_equal(
        auth_cryptogram(card_key, process_factor, challenge), cryptogram, what="card cryptogram"
    )
