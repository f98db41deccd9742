"""ISO 9564-1 PIN blocks (formats 0 and 4) and format 0 translation.

Known answers: knovichikhin/psec tests/test_pinblock.py (format 0 encode/decode, the
format 4 deterministic encipherment with an all-FF fill, format 4 negative vectors),
and ep2 "eft/pos 2000 Security Specification" v8.0.0 §8.4 (format 4, as quoted in the
same psec test file). Error messages must never contain PIN digits.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.ciphers import encrypt_ecb
from hsm.errors import DataFormatError, DataLengthError, HsmError, KeyTypeError, PinBlockError
from hsm.keys import aes, tdes
from hsm.pinblock import (
    decode_format0,
    decrypt_format0,
    decrypt_format4,
    encode_format0,
    encrypt_format0,
    encrypt_format4,
    format4_pan_field,
    format4_pin_field,
    translate_format0,
)

H = bytes.fromhex
PAN = "5555555551234567"
ZPK_A = tdes(H("0123456789ABCDEFFEDCBA9876543210"))
ZPK_B = tdes(H("89ABCDEF01234567FEDCBA9876543210"))


@pytest.mark.parametrize(
    ("pin", "block"),
    [
        ("1234", "041261AAAAEDCBA9"),
        ("123456789", "091261032D8DCBA9"),
        ("1234567890", "0A1261032D82CBA9"),
        ("123456789012", "0C1261032D8226A9"),
    ],
)
def test_format0_matches_psec_examples(pin: str, block: str) -> None:
    """psec tests/test_pinblock.py test_encode/decode_pinblock_iso_0, PAN 5555555551234567."""
    assert encode_format0(pin, PAN) == H(block)
    assert decode_format0(H(block), PAN) == pin


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("241261AAAAEDCBA9", "control field is not 0"),
        ("0F1261AAAAEDCBA9", "length field is outside 4..12"),
        ("021261AAAAEDCBA9", "length field is outside 4..12"),
        ("041261AAAAEDCBAA", "filler is not all F"),
        ("051261AAAAEDCBA9", "digits are not all decimal"),
    ],
)
def test_invalid_format0_blocks_match_psec_negative_examples(block: str, message: str) -> None:
    """psec test_decode_pinblock_iso_0_exception: the same blocks, our error class;
    the messages name the check, never the digits (psec's quote them)."""
    with pytest.raises(PinBlockError, match=message) as info:
        decode_format0(H(block), PAN)
    assert "1234" not in str(info.value)


def test_format4_matches_psec_deterministic_example() -> None:
    """psec test_encipher_pinblock_iso_4_det: key 0011..EEFF, PIN 1234, PAN
    1234567890123456789, random fill FF*8 -> 28B41FDDD29B743E93124BD8E32D921E."""
    key = aes(H("00112233445566778899AABBCCDDEEFF"))
    block = encrypt_format4(key, "1234", "1234567890123456789", fill=b"\xff" * 8)
    assert block == H("28B41FDDD29B743E93124BD8E32D921E")
    assert decrypt_format4(key, block, "1234567890123456789") == "1234"


def test_format4_matches_ep2_security_specification_example() -> None:
    """ep2 Security Specification v8.0.0 §8.4 (via psec test_decipher_pinblock_iso_4)."""
    key = aes(H("C1D0F8FB4958670DBA40AB1F3752EF0D"))
    block = H("CC17F65586BFD0953010226C4FC5B3CA")
    assert decrypt_format4(key, block, "432198765432109870") == "1234"


def test_format4_short_pan_matches_psec_example() -> None:
    """psec test_decipher_pinblock_iso_4, "PAN length < 12": PAN "1", PIN 123456."""
    key = aes(H("00112233445566778899AABBCCDDEEFF"))
    assert decrypt_format4(key, H("39B69B1B91FE05D48F7EF0D68EB2CBD6"), "1") == "123456"


def test_format4_fields_match_psec_examples() -> None:
    """psec test_encode_pin_field_iso_4 and test_encode_pan_field_iso_4."""
    assert format4_pin_field("1234", bytes(8))[:8] == H("441234AAAAAAAAAA")
    assert format4_pan_field("112233445566778899") == H("61122334455667788990000000000000")


@pytest.mark.parametrize(
    ("key", "block", "pan", "message"),
    [
        (
            "E60B15B90ABDF14CEE337C97440F0D6E",
            "7D5AF4C33667A2098626027FB7A9A1B7",
            "4266229809609384667",
            "control field is not 4",
        ),
        (
            "C7BBEBA16C5AD97D5866450718C03750",
            "2F9C910447F17293EC95DEDE1E3CA201",
            "8220499325458689523",
            "digits are not all decimal",
        ),
        (
            "820F6C7C12355BDFF1AB6CE12E8EED89",
            "CCF310A8300B46C925A86B1098089301",
            "939589847393485609",
            "filler is not all A",
        ),
        (
            "4FE3F0311936FBCE44F17159F1659CF09B2BF8913BB514A1",
            "51334B00A6CBA3EC7B1C6F871F060AFC",
            "2129100799029059903",
            "length field is outside 4..12",
        ),
    ],
)
def test_invalid_format4_blocks_match_psec_negative_examples(
    key: str, block: str, pan: str, message: str
) -> None:
    """psec test_decipher_pinblock_iso_4_exception: enciphered blocks that decipher to
    a wrong control field, a non-decimal digit, a wrong filler, a 3-digit PIN."""
    with pytest.raises(PinBlockError, match=message):
        decrypt_format4(aes(H(key)), H(block), pan)


def test_translation_changes_the_key_and_keeps_the_pin() -> None:
    under_a = encrypt_format0(ZPK_A, "8642", PAN)
    under_b = translate_format0(under_a, ZPK_A, ZPK_B, pan=PAN)
    assert under_b != under_a
    assert under_b == encrypt_ecb(ZPK_B, encode_format0("8642", PAN))
    assert decrypt_format0(ZPK_B, under_b, PAN) == "8642"


def test_translation_refuses_a_block_under_another_key() -> None:
    """A block enciphered under some other key deciphers to garbage; translation must
    refuse it instead of re-enciphering garbage (no decryption oracle)."""
    foreign = encrypt_format0(ZPK_B, "8642", PAN)
    with pytest.raises(PinBlockError):
        translate_format0(foreign, ZPK_A, ZPK_B, pan=PAN)


def test_translation_refuses_a_block_for_another_pan() -> None:
    block = encrypt_format0(ZPK_A, "8642", PAN)
    with pytest.raises(PinBlockError):
        translate_format0(block, ZPK_A, ZPK_B, pan="6212345678901234567")


def test_translation_needs_3des_keys_on_both_sides() -> None:
    block = encrypt_format0(ZPK_A, "8642", PAN)
    with pytest.raises(KeyTypeError, match=r"destination key\) needs a TDES key, got an AES"):
        translate_format0(block, ZPK_A, aes(bytes(16)), pan=PAN)
    with pytest.raises(KeyTypeError, match=r"source key\) needs a TDES key"):
        translate_format0(block, aes(bytes(16)), ZPK_B, pan=PAN)


@pytest.mark.parametrize(
    ("pin", "pan", "error", "message"),
    [
        ("123", PAN, DataLengthError, "PIN must be 4..12 digits, got 3"),
        ("1234567890123", PAN, DataLengthError, "PIN must be 4..12 digits, got 13"),
        ("123A", PAN, DataFormatError, "PIN must be a string of decimal digits"),
        ("１２３４", PAN, DataFormatError, "PIN must be a string of decimal digits"),
        ("1234", "555555555555", DataLengthError, "PAN must be 13..19 digits, got 12"),
        ("1234", "5555555555555A", DataFormatError, "PAN must be a string of decimal digits"),
    ],
)
def test_bad_pin_or_pan_is_refused_without_echoing_it(
    pin: str, pan: str, error: type[HsmError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        encode_format0(pin, pan)
    assert pin not in str(info.value)


def test_wrong_block_and_fill_lengths_are_refused() -> None:
    with pytest.raises(DataLengthError, match="format 0 PIN block must be 8 bytes, got 7"):
        decrypt_format0(ZPK_A, bytes(7), PAN)
    with pytest.raises(DataLengthError, match="format 4 PIN block must be 16 bytes, got 8"):
        decrypt_format4(aes(bytes(16)), bytes(8), PAN)
    with pytest.raises(DataLengthError, match="format 4 random fill must be 8 bytes, got 4"):
        encrypt_format4(aes(bytes(16)), "1234", PAN, fill=bytes(4))
    with pytest.raises(DataLengthError, match=r"PAN must be 1..19 digits, got 20"):
        encrypt_format4(aes(bytes(16)), "1234", "1" * 20, fill=bytes(8))


def test_format4_refuses_a_3des_key_and_format0_an_aes_key() -> None:
    with pytest.raises(KeyTypeError, match="format 4 PIN block encipherment needs an AES key"):
        encrypt_format4(ZPK_A, "1234", PAN, fill=bytes(8))
    with pytest.raises(KeyTypeError, match="format 0 PIN block encipherment needs a TDES key"):
        encrypt_format0(aes(bytes(16)), "1234", PAN)


PINS = st.text(alphabet="0123456789", min_size=4, max_size=12)


@given(pin=PINS, pan=st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_format0_round_trips(pin: str, pan: str) -> None:
    assert decode_format0(encode_format0(pin, pan), pan) == pin
    assert (
        decrypt_format0(
            ZPK_B, translate_format0(encrypt_format0(ZPK_A, pin, pan), ZPK_A, ZPK_B, pan=pan), pan
        )
        == pin
    )


@given(
    pin=PINS,
    pan=st.text(alphabet="0123456789", min_size=1, max_size=19),
    key=st.binary(min_size=32, max_size=32),
    fill=st.binary(min_size=8, max_size=8),
)
def test_format4_round_trips(pin: str, pan: str, key: bytes, fill: bytes) -> None:
    k = aes(key)
    assert decrypt_format4(k, encrypt_format4(k, pin, pan, fill=fill), pan) == pin


def test_format4_translation_validates_before_re_enciphering() -> None:
    """A block that does not decipher to a valid format 4 field under the source key
    (wrong key, tampered bytes) is refused; nothing comes out under the target key."""
    from hsm.errors import PinBlockError
    from hsm.keys import aes
    from hsm.pinblock import encrypt_format4, translate_format4

    a, b = aes(bytes(range(16))), aes(bytes(range(16, 32)))
    block = encrypt_format4(a, "1234", "4111111111111111", fill=bytes(8))
    tampered = bytes([block[0] ^ 0x40]) + block[1:]
    with pytest.raises(PinBlockError):
        translate_format4(tampered, a, b, pan="4111111111111111")
    with pytest.raises(PinBlockError):
        translate_format4(block, b, a, pan="4111111111111111")
