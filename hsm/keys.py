"""Typed secret keys for the primitives: key material tagged with its algorithm.

A 16-byte string could be a double-length 3DES key, an AES-128 key or an SM4 key; the
primitives must not guess. `SecretKey` carries the algorithm next to the material, so
that "wrong key type" is a check (`KeyTypeError`) instead of silent garbage.

Invariants:
- a `SecretKey` always has a length its algorithm allows (checked at construction;
  single DES is its own algorithm, `DES`, and never passes for `TDES`);
- `repr`/`str` show the algorithm and length only, never the material or anything
  derived from it (STYLE.md §10);
- equality is identity: comparing keys by value is a timing leak waiting to happen;
  tests compare `.material` explicitly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hsm.errors import KeyLengthError, KeyTypeError


class Algorithm(enum.StrEnum):
    DES = "DES"  # single DES, 8 bytes; only for the explicit single-DES functions
    TDES = "TDES"  # 3DES, double (16) or triple (24) length
    AES = "AES"  # 16, 24 or 32 bytes
    SM4 = "SM4"  # 16 bytes (GB/T 32907)
    HMAC = "HMAC"  # HMAC-SHA256 secret


HMAC_KEY_BYTES_MIN = 16
HMAC_KEY_BYTES_MAX = 128

_LENGTHS: dict[Algorithm, frozenset[int]] = {
    Algorithm.DES: frozenset({8}),
    Algorithm.TDES: frozenset({16, 24}),
    Algorithm.AES: frozenset({16, 24, 32}),
    Algorithm.SM4: frozenset({16}),
    Algorithm.HMAC: frozenset(range(HMAC_KEY_BYTES_MIN, HMAC_KEY_BYTES_MAX + 1)),
}

BLOCK_BYTES: dict[Algorithm, int] = {
    Algorithm.DES: 8,
    Algorithm.TDES: 8,
    Algorithm.AES: 16,
    Algorithm.SM4: 16,
}


def allowed_lengths(algorithm: Algorithm) -> frozenset[int]:
    return _LENGTHS[algorithm]


def _describe_lengths(algorithm: Algorithm) -> str:
    if algorithm is Algorithm.HMAC:
        return f"{HMAC_KEY_BYTES_MIN}..{HMAC_KEY_BYTES_MAX}"
    return ", ".join(str(n) for n in sorted(_LENGTHS[algorithm]))


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class SecretKey:
    """Key material and its algorithm. Build with `SecretKey(Algorithm.AES, b)` or the
    shorthands `tdes`, `aes`, `sm4`, `hmac_key`, `single_des`."""

    algorithm: Algorithm
    material: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.material, bytes):
            raise KeyTypeError(
                f"{self.algorithm} key material must be bytes, not {type(self.material).__name__}"
            )
        if len(self.material) not in _LENGTHS[self.algorithm]:
            hint = ""
            if self.algorithm is Algorithm.TDES and len(self.material) == 8:
                hint = (
                    "; single DES is refused here, use Algorithm.DES and the single-DES functions"
                )
            raise KeyLengthError(
                f"{self.algorithm} key must be {_describe_lengths(self.algorithm)} bytes, "
                f"got {len(self.material)}{hint}"
            )

    def __repr__(self) -> str:
        return f"SecretKey({self.algorithm}, {len(self.material) * 8} bits)"

    __str__ = __repr__

    @property
    def block_bytes(self) -> int:
        """Cipher block length; `KeyTypeError` for HMAC keys, which have none."""
        try:
            return BLOCK_BYTES[self.algorithm]
        except KeyError:
            raise KeyTypeError(f"{self.algorithm} key is not a block-cipher key") from None


def tdes(material: bytes) -> SecretKey:
    return SecretKey(Algorithm.TDES, material)


def aes(material: bytes) -> SecretKey:
    return SecretKey(Algorithm.AES, material)


def sm4(material: bytes) -> SecretKey:
    return SecretKey(Algorithm.SM4, material)


def hmac_key(material: bytes) -> SecretKey:
    return SecretKey(Algorithm.HMAC, material)


def single_des(material: bytes) -> SecretKey:
    return SecretKey(Algorithm.DES, material)


def with_article(name: str) -> str:
    """'an AES', 'an HMAC', 'an SM4', 'a TDES': messages read as sentences."""
    return ("an " if name and name[0] in "AEHS" else "a ") + name


def require(key: SecretKey, *algorithms: Algorithm, operation: str) -> None:
    """Refuse `key` unless its algorithm is one of `algorithms`."""
    if not isinstance(key, SecretKey):
        raise KeyTypeError(f"{operation} needs a SecretKey, not {type(key).__name__}")
    if key.algorithm not in algorithms:
        wanted = " or ".join(str(a) for a in algorithms)
        raise KeyTypeError(
            f"{operation} needs {with_article(wanted)} key, got {with_article(key.algorithm)} key"
        )


def require_double_length_tdes(key: SecretKey, *, operation: str) -> None:
    """EMV and ISO 9797-1 algorithm 3 are defined for double-length (K1||K2) 3DES."""
    require(key, Algorithm.TDES, operation=operation)
    if len(key.material) != 16:
        raise KeyLengthError(
            f"{operation} needs a double-length (16-byte) TDES key, got {len(key.material)} bytes"
        )


def with_odd_parity(material: bytes) -> bytes:
    """Set each byte's low bit so the byte has odd parity (DES key convention).

    DES ignores these bits, so parity never changes a cryptogram; it makes derived
    keys byte-identical with what HSMs (and pyemv, SoftHSM derive) produce."""
    out = bytearray(material)
    for i, b in enumerate(out):
        high = b & 0xFE
        out[i] = high | ((high.bit_count() + 1) & 1)
    return bytes(out)
