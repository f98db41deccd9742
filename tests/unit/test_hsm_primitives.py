"""Block ciphers, typed keys and key check values of the HSM primitives.

Known answers come from public standards and published examples named at each test;
bad input must raise the precise exception class with a message that says what is
wrong and never shows key material.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm import ciphers, primitives
from hsm.ciphers import (
    KcvMethod,
    decrypt_cbc,
    decrypt_ecb,
    encrypt_cbc,
    encrypt_ecb,
    kcv,
    single_des_decrypt_ecb,
    single_des_encrypt_ecb,
    sm4_available,
)
from hsm.errors import (
    AlgorithmUnavailable,
    DataLengthError,
    HsmError,
    KeyLengthError,
    KeyTypeError,
)
from hsm.keys import Algorithm, SecretKey, aes, hmac_key, single_des, sm4, tdes, with_odd_parity

H = bytes.fromhex


def test_tdes_three_key_ecb_matches_sp800_67_example() -> None:
    """NIST SP 800-67 Rev. 1, Appendix B: keys 0123456789ABCDEF / 23456789ABCDEF01 /
    456789ABCDEF0123 over "The qufck brown fox jump" (the typo is the standard's)."""
    key = tdes(H("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123"))
    plain = b"The qufck brown fox jump"
    expected = H("A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900")
    assert encrypt_ecb(key, plain) == expected
    assert decrypt_ecb(key, expected) == plain


def test_double_length_tdes_equals_k1_k2_k1() -> None:
    """Cross-check, no published vector needed: a double-length key K1||K2 is by
    definition keying option 2 of SP 800-67, i.e. the triple-length key K1||K2||K1."""
    k1k2 = H("0123456789ABCDEFFEDCBA9876543210")
    data = H("00112233445566778899AABBCCDDEEFF")
    assert encrypt_ecb(tdes(k1k2), data) == encrypt_ecb(tdes(k1k2 + k1k2[:8]), data)


def test_single_des_matches_grabbe_worked_example() -> None:
    """J. Orlin Grabbe, "The DES Algorithm Illustrated": key 133457799BBCDFF1,
    plaintext 0123456789ABCDEF, ciphertext 85E813540F0AB405."""
    key = single_des(H("133457799BBCDFF1"))
    assert single_des_encrypt_ecb(key, H("0123456789ABCDEF")) == H("85E813540F0AB405")
    assert single_des_decrypt_ecb(key, H("85E813540F0AB405")) == H("0123456789ABCDEF")


def test_aes_ecb_matches_fips197_appendix_c() -> None:
    """FIPS 197, Appendix C.1 (AES-128) and C.3 (AES-256)."""
    plain = H("00112233445566778899AABBCCDDEEFF")
    key128 = aes(H("000102030405060708090A0B0C0D0E0F"))
    key256 = aes(bytes(range(32)))
    assert encrypt_ecb(key128, plain) == H("69C4E0D86A7B0430D8CDB78070B4C55A")
    assert encrypt_ecb(key256, plain) == H("8EA2B7CA516745BFEAFC49904B496089")
    assert decrypt_ecb(key128, H("69C4E0D86A7B0430D8CDB78070B4C55A")) == plain


def test_sm4_ecb_matches_gbt32907_appendix_a() -> None:
    """GB/T 32907-2016, Appendix A.1: key = plaintext = 0123456789ABCDEFFEDCBA9876543210."""
    assert sm4_available()
    key = sm4(H("0123456789ABCDEFFEDCBA9876543210"))
    expected = H("681EDF34D206965E86B3E94F536E4246")
    assert encrypt_ecb(key, H("0123456789ABCDEFFEDCBA9876543210")) == expected
    assert decrypt_ecb(key, expected) == H("0123456789ABCDEFFEDCBA9876543210")


def test_missing_sm4_is_refused_with_a_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    """SM4 is present here; an OpenSSL without it cannot be installed in this test, so
    the probe is replaced (a stand-in for a machine we do not have)."""
    monkeypatch.setattr(ciphers, "sm4_available", lambda: False)
    with pytest.raises(AlgorithmUnavailable, match=r"SM4 is not available"):
        encrypt_ecb(sm4(bytes(16)), bytes(16))


def test_cbc_round_trip_and_chaining() -> None:
    """CBC with a zero IV: the first block equals ECB, the second chains on it."""
    key = aes(bytes(16))
    data = bytes(range(32))
    out = encrypt_cbc(key, bytes(16), data)
    assert out[:16] == encrypt_ecb(key, data[:16])
    assert out[16:] == encrypt_ecb(
        key, bytes(a ^ b for a, b in zip(out[:16], data[16:], strict=True))
    )
    assert decrypt_cbc(key, bytes(16), out) == data


@pytest.mark.parametrize(
    ("key", "size"),
    [(tdes(bytes(16)), 7), (tdes(bytes(24)), 12), (aes(bytes(16)), 8), (sm4(bytes(16)), 17)],
    ids=["tdes-7", "tdes-12", "aes-8", "sm4-17"],
)
def test_data_that_is_not_a_whole_block_is_refused(key: SecretKey, size: int) -> None:
    with pytest.raises(DataLengthError, match=rf"multiple of the .*-byte block, got {size} bytes"):
        encrypt_ecb(key, bytes(size))


def test_empty_data_is_refused() -> None:
    with pytest.raises(DataLengthError, match=r"non-empty"):
        decrypt_ecb(aes(bytes(16)), b"")


def test_wrong_iv_length_is_refused() -> None:
    with pytest.raises(DataLengthError, match=r"IV must be 8 bytes, got 16"):
        encrypt_cbc(tdes(bytes(16)), bytes(16), bytes(8))


@pytest.mark.parametrize(
    ("algorithm", "length", "message"),
    [
        (Algorithm.TDES, 8, "TDES key must be 16, 24 bytes, got 8; single DES is refused"),
        (Algorithm.TDES, 32, "TDES key must be 16, 24 bytes, got 32"),
        (Algorithm.AES, 15, "AES key must be 16, 24, 32 bytes, got 15"),
        (Algorithm.SM4, 24, "SM4 key must be 16 bytes, got 24"),
        (Algorithm.DES, 16, "DES key must be 8 bytes, got 16"),
        (Algorithm.HMAC, 8, "HMAC key must be 16..128 bytes, got 8"),
    ],
)
def test_key_of_wrong_length_cannot_be_built(
    algorithm: Algorithm, length: int, message: str
) -> None:
    with pytest.raises(KeyLengthError, match=message):
        SecretKey(algorithm, bytes(length))


def test_single_des_key_is_refused_by_the_3des_functions() -> None:
    with pytest.raises(
        KeyTypeError, match=r"ECB encrypt needs a TDES or AES or SM4 key, got a DES"
    ):
        encrypt_ecb(single_des(bytes(8)), bytes(8))


def test_hmac_key_is_not_a_block_cipher_key() -> None:
    with pytest.raises(KeyTypeError, match=r"got an HMAC key"):
        encrypt_ecb(hmac_key(bytes(32)), bytes(16))


def test_tdes_key_is_refused_by_the_single_des_functions() -> None:
    with pytest.raises(KeyTypeError, match=r"needs a DES key, got a TDES key"):
        single_des_encrypt_ecb(tdes(bytes(16)), bytes(8))


def test_raw_bytes_instead_of_a_key_is_a_key_type_error() -> None:
    with pytest.raises(KeyTypeError, match=r"needs a SecretKey, not bytes"):
        encrypt_ecb(bytes(16), bytes(16))  # type: ignore[arg-type]


def test_key_repr_and_errors_never_show_material() -> None:
    material = H("0123456789ABCDEFFEDCBA9876543210")
    key = tdes(material)
    assert repr(key) == "SecretKey(TDES, 128 bits)"
    assert str(key) == repr(key)
    assert material.hex() not in repr(key).lower()
    try:
        encrypt_ecb(key, bytes(5))
    except HsmError as exc:
        assert material.hex() not in str(exc).lower()
        assert "0123456789" not in str(exc)


def test_keys_compare_by_identity_not_by_value() -> None:
    assert tdes(bytes(16)) != tdes(bytes(16))


def test_tdes_kcv_matches_tr31_2018_examples() -> None:
    """TR-31:2018 A.7.2.1 and A.7.2.2 (as quoted in openemv/tr31
    test/tr31_decrypt_test.c): KCVs CB9DEA and 57C409 of the wrapped TDES keys."""
    assert kcv(tdes(H("F039121BEC83D26B169BDCD5B22AAF8F"))) == H("CB9DEA")
    assert kcv(tdes(H("3F419E1CB7079442AA37474C2EFBF8B8"))) == H("57C409")


def test_aes_cmac_kcv_matches_tr31_2018_a74_example() -> None:
    """TR-31:2018 A.7.4 (openemv/tr31 test/tr31_decrypt_test.c, test6): the AES key
    3F419E1C...F8B8 has KCV 08793E, the X9.24-1:2017 CMAC-of-a-zero-block KCV; the
    legacy encrypt-zero-block KCV of the same key differs."""
    key = aes(H("3F419E1CB7079442AA37474C2EFBF8B8"))
    assert kcv(key, KcvMethod.CMAC_ZERO_BLOCK) == H("08793E")
    assert kcv(key) != H("08793E")


def test_aes256_cmac_kcv_matches_payshield_example() -> None:
    """openemv/tr31 test/tr31_decrypt_test.c, test8 (generated on a Thales payShield
    10k): AES-256 key BE19E6A0...CACC, KCV 0A00E3."""
    key = aes(H("BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC"))
    assert kcv(key, KcvMethod.CMAC_ZERO_BLOCK) == H("0A00E3")


def test_sm4_kcv_is_the_first_bytes_of_the_encrypted_zero_block() -> None:
    """No published SM4 KCV vector found: cross-check against the GB/T 32907 cipher."""
    key = sm4(H("0123456789ABCDEFFEDCBA9876543210"))
    assert kcv(key, length=4) == encrypt_ecb(key, bytes(16))[:4]


def test_cmac_kcv_is_refused_for_non_aes_keys() -> None:
    with pytest.raises(KeyTypeError, match=r"CMAC KCV is defined for AES keys, got a TDES key"):
        kcv(tdes(bytes(16)), KcvMethod.CMAC_ZERO_BLOCK)


def test_kcv_length_outside_the_block_is_refused() -> None:
    with pytest.raises(DataLengthError, match=r"KCV length must be 2..8 bytes, got 9"):
        kcv(tdes(bytes(16)), length=9)


def test_odd_parity_sets_only_the_low_bit() -> None:
    """Every output byte has odd parity and differs from its input at most in bit 0."""
    for b in range(256):
        (out,) = with_odd_parity(bytes([b]))
        assert out.bit_count() % 2 == 1
        assert out & 0xFE == b & 0xFE


@given(
    algorithm=st.sampled_from([Algorithm.TDES, Algorithm.AES, Algorithm.SM4]),
    seed=st.binary(min_size=32, max_size=32),
    blocks=st.integers(min_value=1, max_value=4),
)
def test_ecb_and_cbc_decrypt_what_they_encrypt(
    algorithm: Algorithm, seed: bytes, blocks: int
) -> None:
    length = {Algorithm.TDES: 24, Algorithm.AES: 32, Algorithm.SM4: 16}[algorithm]
    key = SecretKey(algorithm, seed[:length])
    data = (seed * 4)[: blocks * key.block_bytes]
    iv = seed[: key.block_bytes]
    assert decrypt_ecb(key, encrypt_ecb(key, data)) == data
    assert decrypt_cbc(key, iv, encrypt_cbc(key, iv, data)) == data


def test_primitives_index_resolves_every_name() -> None:
    """hsm.primitives is the one import for backends; each listed name must exist."""
    for name in primitives.__all__:
        assert getattr(primitives, name) is not None, name
