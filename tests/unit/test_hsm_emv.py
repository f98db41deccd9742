"""EMV key derivation, ARQC and ARPC of the HSM primitives.

Known answers: the worked examples in knovichikhin/pyemv (pyemv/kd.py and pyemv/ac.py
docstrings), which follow EMV 4.3 Book 2 §8.1-8.2 and Annex A1.3-A1.4. EMV Book 2
itself carries no numeric examples.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.ciphers import encrypt_ecb
from hsm.emv import (
    arpc_method_1,
    arpc_method_2,
    derive_ac_session_key,
    derive_common_session_key,
    derive_icc_master_key_a,
    generate_ac,
    verify_arqc,
)
from hsm.errors import (
    DataFormatError,
    DataLengthError,
    KeyLengthError,
    KeyTypeError,
    VerificationFailed,
)
from hsm.keys import aes, tdes
from hsm.mac import iso9797_mac3

H = bytes.fromhex
IMK = tdes(H("0123456789ABCDEFFEDCBA9876543210"))
SK = tdes(H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"))
# pyemv/ac.py generate_ac docstring: CDOL1 values in order.
CDOL1 = H(
    "000000002000"  # 9F02 amount authorised
    "000000000000"  # 9F03 amount other
    "0124"  # 9F1A terminal country code
    "0000008000"  # 95 TVR
    "0124"  # 5F2A transaction currency code
    "110309"  # 9A transaction date
    "00"  # 9C transaction type
    "3804823E"  # 9F37 unpredictable number
    "5800"  # 82 AIP
    "0001"  # 9F36 ATC
)


def test_icc_master_key_option_a_matches_pyemv_example() -> None:
    """pyemv/kd.py derive_icc_mk_a: PAN 12345678901234567, PSN 01."""
    icc_mk = derive_icc_master_key_a(IMK, "12345678901234567", "01")
    assert icc_mk.material == H("73AD54688CEF2934B0979857E3C719F1")


def test_common_session_key_matches_pyemv_example() -> None:
    """pyemv/kd.py derive_common_sk: MK 0123..3210, R = 001C000000000000."""
    sk = derive_common_session_key(IMK, H("001C000000000000"))
    assert sk.material == H("E9FB384AF807B940FEDCEA613461B0C4")
    assert derive_ac_session_key(IMK, H("001C")).material == sk.material


def test_session_key_halves_use_f0_and_0f_in_byte_3() -> None:
    """Cross-check of EMV Book 2 A1.3.1 by hand (low bits are parity only)."""
    sk = derive_ac_session_key(IMK, H("1234"))
    raw = encrypt_ecb(IMK, H("1234F00000000000") + H("12340F0000000000"))
    assert bytes(b & 0xFE for b in sk.material) == bytes(b & 0xFE for b in raw)


def test_arqc_matches_pyemv_example() -> None:
    """pyemv/ac.py generate_ac: SK AA..BB.., CDOL1 data above -> 3B76CF10FECD8789."""
    assert generate_ac(SK, CDOL1) == H("3B76CF10FECD8789")
    verify_arqc(SK, CDOL1, H("3B76CF10FECD8789"))
    assert generate_ac(SK, CDOL1) == iso9797_mac3(SK, CDOL1, padding=2)


def test_arpc_method_1_matches_pyemv_example() -> None:
    """pyemv/ac.py generate_arpc_1: ARQC 1234567890ABCDEF, ARC 0000 -> F5E6F44147E2F1B0."""
    assert arpc_method_1(SK, H("1234567890ABCDEF"), H("0000")) == H("F5E6F44147E2F1B0")


def test_arpc_method_2_matches_pyemv_example() -> None:
    """pyemv/ac.py generate_arpc_2: ARQC 1234567890ABCDEF, CSU 00000000 -> 9308BEBC."""
    assert arpc_method_2(SK, H("1234567890ABCDEF"), H("00000000")) == H("9308BEBC")


def test_arpc_method_1_is_3des_of_arqc_xor_arc() -> None:
    """Cross-check of EMV Book 2 §8.2.1 by hand for a non-zero ARC ("3030" = "00")."""
    arqc, arc = H("1234567890ABCDEF"), H("3030")
    expected = encrypt_ecb(SK, bytes(a ^ b for a, b in zip(arqc, arc + bytes(6), strict=True)))
    assert arpc_method_1(SK, arqc, arc) == expected


def test_full_online_authorisation_round_trip() -> None:
    """Card side and issuer side derive the same keys from different starting points
    (the card is personalised with its MK; the issuer has only the IMK)."""
    card_mk = derive_icc_master_key_a(IMK, "6212345678901234", "00")
    card_sk = derive_ac_session_key(card_mk, H("0001"))
    arqc = generate_ac(card_sk, CDOL1)
    issuer_sk = derive_ac_session_key(derive_icc_master_key_a(IMK, "6212345678901234"), H("0001"))
    verify_arqc(issuer_sk, CDOL1, arqc)
    arpc = arpc_method_1(issuer_sk, arqc, H("3030"))
    assert arpc == arpc_method_1(card_sk, arqc, H("3030"))


def test_tampered_transaction_data_fails_arqc_verification() -> None:
    tampered = bytearray(CDOL1)
    tampered[5] ^= 0x01  # one fen more
    with pytest.raises(VerificationFailed, match=r"^ARQC does not match$"):
        verify_arqc(SK, bytes(tampered), H("3B76CF10FECD8789"))


def test_wrong_atc_gives_another_session_key() -> None:
    with pytest.raises(VerificationFailed):
        verify_arqc(
            derive_ac_session_key(IMK, H("0002")),
            CDOL1,
            generate_ac(derive_ac_session_key(IMK, H("0001")), CDOL1),
        )


@pytest.mark.parametrize(
    ("pan", "psn", "error", "message"),
    [
        ("1234567890A", "00", DataFormatError, "PAN must be a string of decimal digits"),
        ("12345678901", "00", DataLengthError, "PAN must be 12..19 digits, got 11"),
        ("12345678901234567890", "00", DataLengthError, "PAN must be 12..19 digits, got 20"),
        ("1234567890123", "1", DataLengthError, "PAN sequence number must be 2 digits, got 1"),
        ("1234567890123", "0X", DataFormatError, "PAN sequence number must be a string"),
    ],
)
def test_bad_pan_or_psn_is_refused(
    pan: str, psn: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        derive_icc_master_key_a(IMK, pan, psn)


def test_key_types_and_lengths_are_checked() -> None:
    with pytest.raises(KeyLengthError, match="double-length \\(16-byte\\) TDES key, got 24"):
        derive_icc_master_key_a(tdes(bytes(24)), "1234567890123")
    with pytest.raises(KeyTypeError, match="needs a TDES key, got an AES key"):
        generate_ac(aes(bytes(16)), CDOL1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: derive_ac_session_key(IMK, H("01")), "ATC \\(tag 9F36\\) must be 2 bytes, got 1"),
        (lambda: derive_common_session_key(IMK, bytes(7)), "R must be 8 bytes, got 7"),
        (lambda: arpc_method_1(SK, bytes(4), H("0000")), "ARQC must be 8 bytes, got 4"),
        (lambda: arpc_method_1(SK, bytes(8), H("00")), "response code must be 2 bytes, got 1"),
        (lambda: arpc_method_2(SK, bytes(8), bytes(3)), "card status update must be 4 bytes"),
        (lambda: arpc_method_2(SK, bytes(8), bytes(4), bytes(9)), "0..8 bytes, got 9"),
        (lambda: verify_arqc(SK, CDOL1, bytes(4)), "ARQC must be 8 bytes, got 4"),
        (lambda: generate_ac(SK, b""), "data must be non-empty"),
    ],
)
def test_wrong_lengths_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(DataLengthError, match=message):
        call()


@given(
    imk=st.binary(min_size=16, max_size=16),
    pan=st.text(alphabet="0123456789", min_size=12, max_size=19),
    atc=st.binary(min_size=2, max_size=2),
    data=st.binary(min_size=1, max_size=64),
)
def test_issuer_verifies_every_card_arqc(imk: bytes, pan: str, atc: bytes, data: bytes) -> None:
    sk = derive_ac_session_key(derive_icc_master_key_a(tdes(imk), pan), atc)
    verify_arqc(sk, data, generate_ac(sk, data))
