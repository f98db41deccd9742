"""Social security card key diversification ("一卡一密") and authentication cryptograms.

The standard's own diversification rule is not public (DOMAIN.md §7), so there is no
published vector for the card rule itself: the 3DES construction is pinned to the
published EMV option A example (same construction, other input bytes), and the rest
is tested by round trips between an independent "virtual card" (which holds only its
own key) and the engine side (which holds only the master key), plus cross-checks
computed by hand from the cipher primitives.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.cardauth import (
    auth_cryptogram,
    derive_card_key,
    derive_process_key,
    diversification_block,
    external_auth_cryptogram,
    internal_auth_cryptogram,
    tdes_diversify,
    verify_auth_cryptogram,
)
from hsm.ciphers import encrypt_ecb
from hsm.errors import DataLengthError, KeyTypeError, VerificationFailed
from hsm.keys import Algorithm, SecretKey, aes, sm4, tdes

H = bytes.fromhex
CARD_SN = H("330300D15600000599110145FFFFFFFF")  # DOMAIN.md §3.2 example
MK_TDES = tdes(H("0123456789ABCDEFFEDCBA9876543210"))
MK_SM4 = sm4(H("0123456789ABCDEFFEDCBA9876543210"))


def test_tdes_diversification_matches_pyemv_option_a_example() -> None:
    """knovichikhin/pyemv pyemv/kd.py derive_icc_mk_a docstring: IMK 0123..3210, PAN
    12345678901234567, PSN 01 -> 73AD54688CEF2934B0979857E3C719F1. Option A's Y is
    4567890123456701; the card rule uses the same 3DES(D) || 3DES(~D) construction."""
    key = tdes_diversify(MK_TDES, H("4567890123456701"))
    assert key.material == H("73AD54688CEF2934B0979857E3C719F1")


def test_tdes_card_key_uses_the_last_8_bytes_of_card_sn() -> None:
    assert diversification_block(CARD_SN, Algorithm.TDES) == H("99110145FFFFFFFF")
    other_region = H("320500D15600000599110145FFFFFFFF")
    assert (
        derive_card_key(MK_TDES, CARD_SN).material
        == derive_card_key(MK_TDES, other_region).material
    )


def test_sm4_card_key_is_sm4_of_the_whole_card_sn() -> None:
    """Cross-check by hand: SM4-ECB(MK, card_sn), and the region bytes matter."""
    assert diversification_block(CARD_SN, Algorithm.SM4) == CARD_SN
    card_key = derive_card_key(MK_SM4, CARD_SN)
    assert card_key.algorithm is Algorithm.SM4
    assert card_key.material == encrypt_ecb(MK_SM4, CARD_SN)
    other_region = H("320500D15600000599110145FFFFFFFF")
    assert derive_card_key(MK_SM4, other_region).material != card_key.material


def test_triple_length_master_gives_a_double_length_card_key() -> None:
    master = tdes(H("0123456789ABCDEFFEDCBA9876543210") + H("0123456789ABCDEF"))
    card_key = derive_card_key(master, CARD_SN)
    assert len(card_key.material) == 16
    assert card_key.material == derive_card_key(MK_TDES, CARD_SN).material


def test_tdes_cryptogram_by_hand() -> None:
    """Cross-check: process key = 3DES(CK, P) || 3DES(CK, ~P) (parity aside) and the
    cryptogram = 3DES-ECB(process key, challenge)."""
    card_key = derive_card_key(MK_TDES, CARD_SN)
    p, c = H("1122334455667788"), H("0102030405060708")
    halves = encrypt_ecb(card_key, p + bytes(b ^ 0xFF for b in p))
    assert encrypt_ecb(tdes(halves), c) == internal_auth_cryptogram(card_key, p, c)


def test_sm4_cryptogram_by_hand() -> None:
    """Cross-check: process key = SM4(CK, P || ~P), cryptogram = left 8 bytes of
    SM4(PK, C || 80 00..00)."""
    card_key = derive_card_key(MK_SM4, CARD_SN)
    p, c = H("1122334455667788"), H("0102030405060708")
    process_key = sm4(encrypt_ecb(card_key, p + bytes(b ^ 0xFF for b in p)))
    assert derive_process_key(card_key, p).material == process_key.material
    expected = encrypt_ecb(process_key, c + H("8000000000000000"))[:8]
    assert internal_auth_cryptogram(card_key, p, c) == expected


class VirtualCard:
    """Stands in for the card's side only: it knows its own keys, never the masters."""

    def __init__(self, internal_key: SecretKey, external_key: SecretKey) -> None:
        self._internal = internal_key
        self._external = external_key

    def internal_authenticate(self, data: bytes) -> bytes:
        return internal_auth_cryptogram(self._internal, data[:8], data[8:])

    def external_authenticate(
        self, process_factor: bytes, challenge: bytes, cryptogram: bytes
    ) -> bool:
        try:
            verify_auth_cryptogram(self._external, process_factor, challenge, cryptogram)
        except VerificationFailed:
            return False
        return True


@pytest.mark.parametrize("masters", [(MK_TDES, tdes(H("00112233445566778899AABBCCDDEEFF")))])
def test_card_and_engine_agree_in_both_directions(masters: tuple[SecretKey, SecretKey]) -> None:
    """The engine derives both card keys from the masters and card_sn; the card holds
    them as personalised. Internal auth verifies on the engine side, external auth on
    the card side, for 3DES and SM4."""
    for internal_master, external_master in [
        masters,
        (MK_SM4, sm4(H("00112233445566778899AABBCCDDEEFF"))),
    ]:
        card = VirtualCard(
            derive_card_key(internal_master, CARD_SN), derive_card_key(external_master, CARD_SN)
        )
        p, c = H("A1A2A3A4A5A6A7A8"), H("B1B2B3B4B5B6B7B8")
        answer = card.internal_authenticate(p + c)
        verify_auth_cryptogram(derive_card_key(internal_master, CARD_SN), p, c, answer)
        cp, cc = H("C1C2C3C4C5C6C7C8"), H("D1D2D3D4D5D6D7D8")
        ext = external_auth_cryptogram(derive_card_key(external_master, CARD_SN), cp, cc)
        assert card.external_authenticate(cp, cc, ext)
        assert not card.external_authenticate(cp, cc, answer)


def test_clone_with_wrong_keys_fails_verification() -> None:
    """A clone holds the right card_sn but a key from another master."""
    clone_key = derive_card_key(tdes(H("FEDCBA98765432100123456789ABCDEF")), CARD_SN)
    p, c = H("0000000000000001"), H("0000000000000002")
    with pytest.raises(VerificationFailed, match=r"^card cryptogram does not match$"):
        verify_auth_cryptogram(
            derive_card_key(MK_TDES, CARD_SN), p, c, internal_auth_cryptogram(clone_key, p, c)
        )


def test_replayed_answer_to_a_new_challenge_fails() -> None:
    card_key = derive_card_key(MK_SM4, CARD_SN)
    p = H("0000000000000001")
    old = auth_cryptogram(card_key, p, H("0000000000000002"))
    with pytest.raises(VerificationFailed):
        verify_auth_cryptogram(card_key, p, H("0000000000000003"), old)


@pytest.mark.parametrize("size", [15, 17, 32])
def test_card_sn_of_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(DataLengthError, match=f"card_sn .* must be 16 bytes, got {size}"):
        derive_card_key(MK_TDES, bytes(size))


def test_aes_master_key_is_refused() -> None:
    with pytest.raises(KeyTypeError, match="card key diversification needs a TDES or SM4 key"):
        derive_card_key(aes(bytes(16)), CARD_SN)


@pytest.mark.parametrize(
    ("process_factor", "challenge", "message"),
    [
        (bytes(7), bytes(8), "process factor must be 8 bytes, got 7"),
        (bytes(8), bytes(16), "challenge must be 8 bytes, got 16"),
        (bytes(8), "12345678", "challenge must be 8 bytes, got str"),
    ],
)
def test_wrong_challenge_lengths_are_refused(
    process_factor: bytes, challenge: bytes, message: str
) -> None:
    card_key = derive_card_key(MK_TDES, CARD_SN)
    with pytest.raises(DataLengthError, match=message):
        auth_cryptogram(card_key, process_factor, challenge)


def test_cryptogram_of_wrong_length_is_refused_before_comparing() -> None:
    card_key = derive_card_key(MK_TDES, CARD_SN)
    with pytest.raises(DataLengthError, match="cryptogram must be 8 bytes, got 4"):
        verify_auth_cryptogram(card_key, bytes(8), bytes(8), bytes(4))


@given(
    algorithm=st.sampled_from([Algorithm.TDES, Algorithm.SM4]),
    master=st.binary(min_size=16, max_size=16),
    card_sn=st.binary(min_size=16, max_size=16),
    process_factor=st.binary(min_size=8, max_size=8),
    challenge=st.binary(min_size=8, max_size=8),
)
def test_engine_verifies_what_any_card_computes(
    algorithm: Algorithm, master: bytes, card_sn: bytes, process_factor: bytes, challenge: bytes
) -> None:
    mk = SecretKey(algorithm, master)
    card_key = derive_card_key(mk, card_sn)
    answer = internal_auth_cryptogram(card_key, process_factor, challenge)
    assert len(answer) == 8
    verify_auth_cryptogram(derive_card_key(mk, card_sn), process_factor, challenge, answer)
