"""MACs of the HSM primitives: ISO 9797-1 padding and MAC algorithms 1 and 3, CMAC over
AES, 3DES and SM4, HMAC-SHA256, and the constant-time verify helpers.

Each known answer names its source. SM4-CMAC has no published vector that we could
find; it is cross-checked against an independent SP 800-38B CMAC written here on top
of the ECB primitive, which itself reproduces the published AES and 3DES examples.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.ciphers import encrypt_ecb
from hsm.errors import (
    DataFormatError,
    DataLengthError,
    KeyLengthError,
    KeyTypeError,
    VerificationFailed,
)
from hsm.keys import SecretKey, aes, hmac_key, sm4, tdes
from hsm.mac import (
    cmac,
    hmac_sha256,
    iso9797_mac1,
    iso9797_mac3,
    pad_method_1,
    pad_method_2,
    verify_cmac,
    verify_equal,
    verify_hmac_sha256,
    verify_iso9797_mac1,
    verify_iso9797_mac3,
)

H = bytes.fromhex

# NIST SP 800-38B example messages (AES_CMAC.pdf / TDES_CMAC.pdf, RFC 4493 §4).
NIST_MESSAGE = H(
    "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
    "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710"
)


def test_padding_method_1_and_2_follow_iso9797_1() -> None:
    """ISO/IEC 9797-1 §6.1.1 and §6.1.2 (the cases pyemv tests/test_mac.py checks)."""
    assert pad_method_1(b"") == bytes(8)
    assert pad_method_1(b"F" * 3) == b"FFF" + bytes(5)
    assert pad_method_1(b"F" * 8) == b"F" * 8
    assert pad_method_2(b"") == b"\x80" + bytes(7)
    assert pad_method_2(b"F" * 7) == b"F" * 7 + b"\x80"
    assert pad_method_2(b"F" * 8) == b"F" * 8 + b"\x80" + bytes(7)
    assert pad_method_2(b"F" * 16, 16) == b"F" * 16 + b"\x80" + bytes(15)


@pytest.mark.parametrize(
    ("padding", "expected"), [(1, "78DA3D3DEB48FD4D"), (2, "2BC2D9EDE0CF31F6")]
)
def test_retail_mac_matches_pyemv_example(padding: int, expected: str) -> None:
    """knovichikhin/pyemv tests/test_mac.py::test_mac_iso9797_3: K1 = AA.., K2 = BB..,
    data "hello world"."""
    key = tdes(H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"))
    assert iso9797_mac3(key, b"hello world", padding=padding) == H(expected)


@pytest.mark.parametrize(
    ("padding", "expected"), [(1, "68D9038F23360DF3"), (2, "32DC341271ACCD00")]
)
def test_cbc_mac_matches_psec_example(padding: int, expected: str) -> None:
    """knovichikhin/psec tests/test_mac.py::test_generate_cbc_mac: 3DES key AA..BB..,
    data "hello world", ISO 9797-1 MAC algorithm 1."""
    key = tdes(H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"))
    assert iso9797_mac1(key, b"hello world", padding=padding) == H(expected)
    assert iso9797_mac1(key, b"hello world", padding=padding, mac_bytes=4) == H(expected)[:4]


def test_retail_mac_with_k1_equal_k2_is_single_des_cbc_mac() -> None:
    """Cross-check: with K2 = K1 the final decrypt/encrypt cancels, leaving the plain
    single-DES CBC-MAC, which equals 3DES CBC-MAC under K1||K1."""
    k = H("0123456789ABCDEF")
    data = b"Now is the time for all "
    assert iso9797_mac3(tdes(k + k), data) == iso9797_mac1(tdes(k + k), data)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "BB1D6929E95937287FA37D129B756746"),
        (16, "070A16B46B4D4144F79BDD9DD04A287C"),
        (40, "DFA66747DE9AE63030CA32611497C827"),
        (64, "51F0BEBF7E3B9D92FC49741779363CFE"),
    ],
)
def test_aes128_cmac_matches_rfc4493(length: int, expected: str) -> None:
    """RFC 4493 §4, examples 1-4 (= NIST SP 800-38B AES-128 examples)."""
    key = aes(H("2B7E151628AED2A6ABF7158809CF4F3C"))
    assert cmac(key, NIST_MESSAGE[:length]) == H(expected)


@pytest.mark.parametrize(
    ("key_hex", "results"),
    [
        (
            "0123456789ABCDEF23456789ABCDEF010123456789ABCDEF",
            ["79CE52A7F786A960", "CC18A0B79AF2413B", "C06D377ECD101969", "9CD33580F9B64DFB"],
        ),
        (
            "0123456789AACDEF23456789ABCDEF01456789ABCDEF0123",
            ["7DB0D37DF936C550", "30239CF1F52E6609", "6C9F3EE4923F6BE2", "99429BD0BF7904E5"],
        ),
    ],
    ids=["two-key", "three-key"],
)
def test_tdes_cmac_matches_nist_examples(key_hex: str, results: list[str]) -> None:
    """NIST SP 800-38B TDEA examples (CSRC "TDES_CMAC.pdf"), message lengths 0, 16, 20
    and 32 bytes, as carried in Mbed TLS library/cmac.c (des3_2key_*/des3_3key_*)."""
    key = tdes(H(key_hex))
    for length, expected in zip([0, 16, 20, 32], results, strict=True):
        assert cmac(key, NIST_MESSAGE[:length]) == H(expected)


def test_two_key_tdes_cmac_accepts_the_double_length_form() -> None:
    """The NIST two-key example key is K1||K2||K1; given as K1||K2 it must agree."""
    key = tdes(H("0123456789ABCDEF23456789ABCDEF01"))
    assert cmac(key, NIST_MESSAGE[:16]) == H("CC18A0B79AF2413B")


def _reference_cmac(key: SecretKey, message: bytes) -> bytes:
    """Independent CMAC from NIST SP 800-38B §6.1-6.2, on the ECB primitive only."""
    block = key.block_bytes
    rb = 0x87 if block == 16 else 0x1B

    def dbl(v: bytes) -> bytes:
        n = int.from_bytes(v, "big") << 1
        if v[0] & 0x80:
            n ^= rb
        return (n & ((1 << (8 * block)) - 1)).to_bytes(block, "big")

    k1 = dbl(encrypt_ecb(key, bytes(block)))
    k2 = dbl(k1)
    if message and len(message) % block == 0:
        head, last = (
            message[:-block],
            bytes(a ^ b for a, b in zip(message[-block:], k1, strict=True)),
        )
    else:
        cut = len(message) - len(message) % block
        tail = message[cut:] + b"\x80" + bytes(block - len(message) % block - 1)
        head, last = message[:cut], bytes(a ^ b for a, b in zip(tail, k2, strict=True))
    chain = bytes(block)
    for i in range(0, len(head), block):
        chain = encrypt_ecb(
            key, bytes(a ^ b for a, b in zip(chain, head[i : i + block], strict=True))
        )
    return encrypt_ecb(key, bytes(a ^ b for a, b in zip(chain, last, strict=True)))


def test_reference_cmac_reproduces_the_published_examples() -> None:
    """The cross-check implementation is itself pinned to RFC 4493 and the NIST TDEA
    example, so agreement on SM4 below means something."""
    assert _reference_cmac(aes(H("2B7E151628AED2A6ABF7158809CF4F3C")), NIST_MESSAGE[:40]) == H(
        "DFA66747DE9AE63030CA32611497C827"
    )
    three_key = tdes(H("0123456789AACDEF23456789ABCDEF01456789ABCDEF0123"))
    assert _reference_cmac(three_key, NIST_MESSAGE[:20]) == H("6C9F3EE4923F6BE2")


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 32, 64])
def test_sm4_cmac_agrees_with_an_independent_sp800_38b_cmac(length: int) -> None:
    """No published SM4-CMAC vector found: round trip + cross-check against the
    reference CMAC over the GB/T 32907 cipher (itself pinned by its KAT)."""
    key = sm4(H("0123456789ABCDEFFEDCBA9876543210"))
    assert cmac(key, NIST_MESSAGE[:length]) == _reference_cmac(key, NIST_MESSAGE[:length])


@pytest.mark.parametrize(
    ("key", "data", "expected"),
    [
        (
            b"\x0b" * 20,
            b"Hi There",
            "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7",
        ),
        (
            bytes(range(1, 26)),
            b"\xcd" * 50,
            "82558A389A443C0EA4CC819899F2083A85F0FAA3E578F8077A2E3FF46729665B",
        ),
    ],
    ids=["rfc4231-case1", "rfc4231-case4"],
)
def test_hmac_sha256_matches_rfc4231(key: bytes, data: bytes, expected: str) -> None:
    """RFC 4231 §4.2 (test case 1) and §4.5 (test case 4), HMAC-SHA-256."""
    assert hmac_sha256(hmac_key(key), data) == H(expected)


def test_hmac_key_shorter_than_16_bytes_is_refused() -> None:
    """RFC 4231 test case 2 uses the 4-byte key "Jefe"; the HSM refuses such keys."""
    with pytest.raises(KeyLengthError, match=r"HMAC key must be 16..128 bytes, got 4"):
        hmac_key(b"Jefe")


def test_retail_mac_needs_a_double_length_tdes_key() -> None:
    with pytest.raises(KeyLengthError, match=r"double-length \(16-byte\) TDES key, got 24"):
        iso9797_mac3(tdes(bytes(24)), b"x")
    with pytest.raises(KeyTypeError, match=r"needs a TDES key, got an AES key"):
        iso9797_mac3(aes(bytes(16)), b"x")


def test_hmac_refuses_a_cipher_key_and_cmac_refuses_an_hmac_key() -> None:
    with pytest.raises(KeyTypeError, match=r"HMAC-SHA256 needs an HMAC key, got an AES key"):
        hmac_sha256(aes(bytes(32)), b"x")
    with pytest.raises(KeyTypeError, match=r"CMAC needs a TDES or AES or SM4 key, got an HMAC key"):
        cmac(hmac_key(bytes(32)), b"x")


def test_unknown_padding_method_is_refused() -> None:
    with pytest.raises(DataFormatError, match=r"padding method must be 1 or 2, got 3"):
        iso9797_mac1(tdes(bytes(16)), b"x", padding=3)


@pytest.mark.parametrize("mac_bytes", [3, 9])
def test_truncation_outside_4_to_8_bytes_is_refused(mac_bytes: int) -> None:
    with pytest.raises(DataLengthError, match=rf"MAC length must be 4..8 bytes, got {mac_bytes}"):
        iso9797_mac3(tdes(bytes(16)), b"x", mac_bytes=mac_bytes)


def test_tampered_mac_fails_verification_without_showing_values() -> None:
    key = tdes(H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"))
    mac = iso9797_mac3(key, b"hello world")
    tampered = bytes([mac[0] ^ 1]) + mac[1:]
    with pytest.raises(VerificationFailed, match=r"^ISO 9797-1 MAC 3 does not match$"):
        verify_iso9797_mac3(key, b"hello world", tampered)
    with pytest.raises(VerificationFailed, match=r"ISO 9797-1 MAC 3 does not match"):
        verify_iso9797_mac3(key, b"hello world!", mac)


def test_verify_rejects_too_short_and_wrong_type_macs() -> None:
    key = aes(bytes(16))
    with pytest.raises(DataLengthError, match=r"CMAC to verify must be 4..16 bytes, got 2"):
        verify_cmac(key, b"x", b"ab")
    with pytest.raises(DataFormatError, match=r"must be bytes, not str"):
        verify_cmac(key, b"x", "abcd")  # type: ignore[arg-type]
    with pytest.raises(VerificationFailed, match=r"expected 32 bytes, got 16"):
        verify_hmac_sha256(hmac_key(bytes(32)), b"x", bytes(16))


def test_verify_equal_accepts_equal_values() -> None:
    verify_equal(b"abcd", bytearray(b"abcd"), what="token")
    with pytest.raises(VerificationFailed, match=r"^token does not match$"):
        verify_equal(b"abcd", b"abce", what="token")


@given(
    key_bytes=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=80),
    truncate=st.integers(min_value=4, max_value=8),
)
def test_generated_macs_verify_and_flipped_bits_do_not(
    key_bytes: bytes, data: bytes, truncate: int
) -> None:
    key = tdes(key_bytes)
    mac3 = iso9797_mac3(key, data, mac_bytes=truncate)
    verify_iso9797_mac3(key, data, mac3)
    mac1 = iso9797_mac1(key, data, padding=1)
    verify_iso9797_mac1(key, data, mac1, padding=1)
    akey = aes(key_bytes)
    tag = cmac(akey, data)
    verify_cmac(akey, data, tag[:truncate])
    with pytest.raises(VerificationFailed):
        verify_cmac(akey, data, bytes([tag[0] ^ 0x80]) + tag[1:])
    hkey = hmac_key(key_bytes)
    verify_hmac_sha256(hkey, data, hmac_sha256(hkey, data))
