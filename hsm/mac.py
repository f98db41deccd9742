"""Message authentication codes: ISO/IEC 9797-1 padding methods 1 and 2, MAC
algorithm 1 (CBC-MAC) and algorithm 3 (the "retail MAC"), CMAC (NIST SP 800-38B) over
AES, 3DES and SM4, HMAC-SHA256, and constant-time verification.

Invariants:
- a MAC is computed only with a key whose algorithm the MAC defines (`KeyTypeError`
  otherwise); algorithm 3 only with a double-length 3DES key;
- truncation lengths are checked (`DataLengthError`), never silently clamped;
- every `verify_*` compares in constant time and raises `VerificationFailed` on a
  mismatch; the message never contains either MAC value.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac

from cryptography.hazmat.primitives import cmac as _cmac

from hsm.ciphers import cipher_algorithm, encrypt_cbc, encrypt_ecb, single_des_encrypt_ecb
from hsm.errors import DataFormatError, DataLengthError, VerificationFailed
from hsm.keys import Algorithm, SecretKey, require, require_double_length_tdes, single_des

MAC_BYTES_MIN = 4


def pad_method_1(data: bytes, block: int = 8) -> bytes:
    """ISO/IEC 9797-1 padding method 1: zero bytes up to a whole block; empty data
    becomes one zero block."""
    if not data:
        return bytes(block)
    return bytes(data) + bytes(-len(data) % block)


def pad_method_2(data: bytes, block: int = 8) -> bytes:
    """ISO/IEC 9797-1 padding method 2: one 0x80 byte, then zero bytes up to a whole
    block (always adds at least one byte)."""
    padded = bytes(data) + b"\x80"
    return padded + bytes(-len(padded) % block)


def _pad(data: bytes, padding: int, block: int) -> bytes:
    if padding == 1:
        return pad_method_1(data, block)
    if padding == 2:
        return pad_method_2(data, block)
    raise DataFormatError(f"ISO 9797-1 padding method must be 1 or 2, got {padding}")


def _truncate(mac: bytes, mac_bytes: int, operation: str) -> bytes:
    if not MAC_BYTES_MIN <= mac_bytes <= len(mac):
        raise DataLengthError(
            f"{operation}: MAC length must be {MAC_BYTES_MIN}..{len(mac)} bytes, got {mac_bytes}"
        )
    return mac[:mac_bytes]


def iso9797_mac1(
    key: SecretKey, data: bytes, *, padding: int = 2, mac_bytes: int | None = None
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: CBC-MAC with zero IV under a 3DES, AES or SM4
    key; the last block, or its leftmost `mac_bytes`."""
    require(key, Algorithm.TDES, Algorithm.AES, Algorithm.SM4, operation="ISO 9797-1 MAC 1")
    block = key.block_bytes
    last = encrypt_cbc(key, bytes(block), _pad(data, padding, block))[-block:]
    return last if mac_bytes is None else _truncate(last, mac_bytes, "ISO 9797-1 MAC 1")


def iso9797_mac3(key: SecretKey, data: bytes, *, padding: int = 2, mac_bytes: int = 8) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", ANSI X9.19): single-DES CBC under
    K1 over every block, then the last output is decrypted under K2 and encrypted
    under K1. Needs a double-length 3DES key K1||K2."""
    require_double_length_tdes(key, operation="ISO 9797-1 MAC 3")
    k1 = single_des(key.material[:8])
    padded = _pad(data, padding, 8)
    chain = bytes(8)
    for i in range(0, len(padded) - 8, 8):
        chain = single_des_encrypt_ecb(k1, _xor(chain, padded[i : i + 8]))
    # The last step as one 3DES (K1, K2, K1) operation equals D(K2) then E(K1)
    # after E(K1) of the last input block.
    last = encrypt_ecb(key, _xor(chain, padded[-8:]))
    return _truncate(last, mac_bytes, "ISO 9797-1 MAC 3")


def cmac(key: SecretKey, data: bytes, *, mac_bytes: int | None = None) -> bytes:
    """CMAC (NIST SP 800-38B; RFC 4493 for AES-128) under an AES, 3DES or SM4 key.
    Full block length unless `mac_bytes` asks for a truncation."""
    algorithm = cipher_algorithm(key, operation="CMAC")
    c = _cmac.CMAC(algorithm)
    c.update(bytes(data))
    full = c.finalize()
    return full if mac_bytes is None else _truncate(full, mac_bytes, "CMAC")


def hmac_sha256(key: SecretKey, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104, FIPS 198-1) under an HMAC key; 32 bytes."""
    require(key, Algorithm.HMAC, operation="HMAC-SHA256")
    return _hmac.new(key.material, bytes(data), hashlib.sha256).digest()


def verify_equal(computed: bytes, presented: bytes | bytearray, *, what: str) -> None:
    """Constant-time comparison; `VerificationFailed` naming `what` on mismatch.

    A presented value of another length than the computed one is a mismatch too (its
    length is not secret and is named)."""
    if not isinstance(presented, bytes | bytearray):
        raise DataFormatError(f"{what} to verify must be bytes, not {type(presented).__name__}")
    if len(presented) != len(computed):
        raise VerificationFailed(
            f"{what} does not match: expected {len(computed)} bytes, got {len(presented)}"
        )
    if not _hmac.compare_digest(computed, bytes(presented)):
        raise VerificationFailed(f"{what} does not match")


def verify_iso9797_mac1(key: SecretKey, data: bytes, mac: bytes, *, padding: int = 2) -> None:
    """Verify a (possibly truncated, at least 4-byte) ISO 9797-1 MAC 1."""
    _verify_truncated(iso9797_mac1(key, data, padding=padding), mac, what="ISO 9797-1 MAC 1")


def verify_iso9797_mac3(key: SecretKey, data: bytes, mac: bytes, *, padding: int = 2) -> None:
    """Verify a (possibly truncated, at least 4-byte) ISO 9797-1 MAC 3."""
    _verify_truncated(iso9797_mac3(key, data, padding=padding), mac, what="ISO 9797-1 MAC 3")


def verify_cmac(key: SecretKey, data: bytes, mac: bytes) -> None:
    """Verify a (possibly truncated, at least 4-byte) CMAC."""
    _verify_truncated(cmac(key, data), mac, what="CMAC")


def verify_hmac_sha256(key: SecretKey, data: bytes, mac: bytes) -> None:
    """Verify a full 32-byte HMAC-SHA256."""
    verify_equal(hmac_sha256(key, data), mac, what="HMAC-SHA256")


def _verify_truncated(full: bytes, mac: bytes, *, what: str) -> None:
    if not isinstance(mac, bytes | bytearray):
        raise DataFormatError(f"{what} to verify must be bytes, not {type(mac).__name__}")
    if not MAC_BYTES_MIN <= len(mac) <= len(full):
        raise DataLengthError(
            f"{what} to verify must be {MAC_BYTES_MIN}..{len(full)} bytes, got {len(mac)}"
        )
    verify_equal(full[: len(mac)], mac, what=what)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))
