"""The soft backend behind the `Hsm` protocol: callers name keys, never see them; a
cryptogram, MAC or ARQC computed on the other side (card, terminal) verifies, a
tampered one does not; wrong key types and missing keys are precise errors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import cardauth, emv, mac, pinblock
from hsm.errors import DataLengthError, KeyTypeError
from hsm.keys import aes, hmac_key, sm4, tdes
from hsm.keystore import KeyEntry, KeyStore, KeyType
from hsm.protocol import KeyNotFound, KeyRef, MacAlgorithm
from hsm.soft import SoftHsm

T = 1.0  # deadline, seconds
IMK_3DES = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
IMK_SM4 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
EMV_IMK = bytes.fromhex("9E15204313F7318ACB79B90BD986AD29")
AES_KEY = bytes(range(16))
HMAC_KEY = bytes(range(32))
ZPK_A = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")
ZPK_B = bytes.fromhex("FEDCBA9876543210FEDCBA9876543210")
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CARD_SN = bytes.fromhex("330300D15600000599110145FFFFFFFF")


def entry(label: str, key_type: KeyType, material: bytes) -> KeyEntry:
    return KeyEntry(label, 1, key_type, "test", "", material)


@pytest.fixture
def hsm() -> SoftHsm:
    der = EC_KEY.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SoftHsm(
        KeyStore(
            [
                entry("card.3des", KeyType.tdes2, IMK_3DES),
                entry("card.sm4", KeyType.sm4, IMK_SM4),
                entry("emv.imk", KeyType.tdes2, EMV_IMK),
                entry("mac.aes", KeyType.aes128, AES_KEY),
                entry("mac.hmac", KeyType.hmac, HMAC_KEY),
                entry("zpk.a", KeyType.tdes2, ZPK_A),
                entry("zpk.b", KeyType.tdes2, ZPK_B),
                entry("ecard.sign", KeyType.ec_p256, der),
            ]
        )
    )


@pytest.mark.parametrize(
    ("label", "make"), [("card.3des", lambda: tdes(IMK_3DES)), ("card.sm4", lambda: sm4(IMK_SM4))]
)
async def test_card_cryptogram_from_the_card_side_verifies(
    hsm: SoftHsm, label: str, make: object
) -> None:
    card_key = cardauth.derive_card_key(make(), CARD_SN)  # type: ignore[operator]
    factor, challenge = bytes(range(8)), bytes(range(8, 16))
    cryptogram = cardauth.internal_auth_cryptogram(card_key, factor, challenge)
    ref = KeyRef(label)
    assert await hsm.verify_card_cryptogram(
        ref, CARD_SN, factor, challenge, cryptogram, deadline_s=T
    )
    tampered = bytes([cryptogram[0] ^ 1]) + cryptogram[1:]
    assert not await hsm.verify_card_cryptogram(
        ref, CARD_SN, factor, challenge, tampered, deadline_s=T
    )
    clone_sn = CARD_SN[:-5] + b"\x00" + CARD_SN[-4:]
    assert not await hsm.verify_card_cryptogram(
        ref, clone_sn, factor, challenge, cryptogram, deadline_s=T
    )
    ext = await hsm.external_auth_cryptogram(ref, CARD_SN, factor, challenge, deadline_s=T)
    assert ext == cardauth.external_auth_cryptogram(card_key, factor, challenge)


@pytest.mark.parametrize(
    ("label", "algorithm", "reference"),
    [
        ("mac.hmac", MacAlgorithm.hmac_sha256, lambda d: mac.hmac_sha256(hmac_key(HMAC_KEY), d)),
        ("mac.aes", MacAlgorithm.aes_cmac, lambda d: mac.cmac(aes(AES_KEY), d)),
        ("zpk.a", MacAlgorithm.iso9797_alg3, lambda d: mac.iso9797_mac3(tdes(ZPK_A), d)),
        ("zpk.a", MacAlgorithm.tdes_cmac, lambda d: mac.cmac(tdes(ZPK_A), d)),
    ],
)
async def test_macs_match_the_primitives_and_tampering_fails(
    hsm: SoftHsm, label: str, algorithm: MacAlgorithm, reference: object
) -> None:
    data = b"POST\n/api/v1/tx\n1764380000\nnonce-nonce-nonce\nabc"
    out = await hsm.mac_generate(KeyRef(label), algorithm, data, deadline_s=T)
    assert out == reference(data)  # type: ignore[operator]
    assert await hsm.mac_verify(KeyRef(label), algorithm, data, out, deadline_s=T)
    assert not await hsm.mac_verify(KeyRef(label), algorithm, data + b"!", out, deadline_s=T)


async def test_wrong_key_types_and_missing_keys(hsm: SoftHsm) -> None:
    with pytest.raises(KeyTypeError):
        await hsm.mac_generate(KeyRef("zpk.a"), MacAlgorithm.aes_cmac, b"x", deadline_s=T)
    with pytest.raises(KeyTypeError):
        await hsm.mac_generate(KeyRef("mac.aes"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
    with pytest.raises(KeyTypeError, match="not an EC-P256 key"):
        await hsm.sign(KeyRef("mac.aes"), b"x", deadline_s=T)
    with pytest.raises(KeyTypeError, match="not a secret key"):
        await hsm.mac_generate(KeyRef("ecard.sign"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
    with pytest.raises(KeyNotFound, match="no key labelled 'absent'"):
        await hsm.mac_generate(KeyRef("absent"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
    with pytest.raises(DataLengthError):
        await hsm.random_bytes(0, deadline_s=T)


async def test_arqc_from_the_card_verifies_and_arpc_matches(hsm: SoftHsm) -> None:
    pan, psn, atc = "6212345678901234", "01", bytes.fromhex("0042")
    session = emv.derive_ac_session_key(emv.derive_icc_master_key_a(tdes(EMV_IMK), pan, psn), atc)
    data = bytes.fromhex("000000010000000000000000015600000000000156261129000012345678")
    arqc = emv.generate_ac(session, data)
    ref = KeyRef("emv.imk")
    assert await hsm.verify_arqc(ref, pan, psn, atc, data, arqc, deadline_s=T)
    assert not await hsm.verify_arqc(ref, pan, psn, bytes.fromhex("0043"), data, arqc, deadline_s=T)
    arpc = await hsm.arpc_method_1(ref, pan, psn, atc, arqc, b"\x30\x30", deadline_s=T)
    assert arpc == emv.arpc_method_1(session, arqc, b"\x30\x30")


async def test_pin_block_is_translated_without_the_pin_leaving(hsm: SoftHsm) -> None:
    pan = "6212345678901234"
    block = pinblock.encrypt_format0(tdes(ZPK_A), "123456", pan)
    out = await hsm.translate_pin_format0(
        KeyRef("zpk.a"), KeyRef("zpk.b"), block, pan, deadline_s=T
    )
    assert pinblock.decrypt_format0(tdes(ZPK_B), out, pan) == "123456"


async def test_signatures_and_key_listing(hsm: SoftHsm) -> None:
    signature = await hsm.sign(KeyRef("ecard.sign"), b"token", deadline_s=T)
    assert await hsm.verify_signature(KeyRef("ecard.sign"), b"token", signature, deadline_s=T)
    assert not await hsm.verify_signature(KeyRef("ecard.sign"), b"token2", signature, deadline_s=T)
    keys = await hsm.list_keys(deadline_s=T)
    assert {k.label for k in keys} >= {"card.3des", "ecard.sign"}
    assert all(IMK_3DES.hex() not in repr(k) for k in keys)
