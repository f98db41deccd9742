"""One conformance suite for every `Hsm` backend (DESIGN.md §5): the same inputs must
give the same outputs whatever holds the keys. A backend's test module subclasses
`HsmConformance` and provides an `hsm` fixture whose keys are the `TEST_KEYS` below
under the same labels (how they get there is the backend's business).

Expected values are computed with the primitives (hsm.*), themselves pinned by
known-answer tests, so a backend passes only if it computes exactly what they do.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import cardauth, emv, mac, pinblock, terminalkeys
from hsm.errors import KeyTypeError
from hsm.keys import aes, hmac_key, sm4, tdes
from hsm.keystore import KeyEntry, KeyType
from hsm.protocol import Hsm, KeyNotFound, KeyRef, MacAlgorithm

T = 5.0  # deadline, seconds
CARD_SN = bytes.fromhex("330300D15600000599110145FFFFFFFF")
PAN, PSN, ATC = "6212345678901234", "01", bytes.fromhex("0042")
CDOL1 = bytes.fromhex("000000010000000000000000015600000000000156261129000012345678")
_EC = ec.generate_private_key(ec.SECP256R1())

# label -> (type, material); material of the EC key is PKCS#8 DER.
TEST_KEYS: dict[str, tuple[KeyType, bytes]] = {
    "card.3des": (KeyType.tdes2, bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")),
    "card.sm4": (KeyType.sm4, bytes.fromhex("00112233445566778899AABBCCDDEEFF")),
    "emv.imk": (KeyType.tdes2, bytes.fromhex("9E15204313F7318ACB79B90BD986AD29")),
    "mac.aes": (KeyType.aes128, bytes(range(16))),
    "mac.hmac": (KeyType.hmac, bytes(range(32))),
    "zpk.a": (KeyType.tdes2, bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")),
    "zpk.b": (KeyType.tdes2, bytes.fromhex("FEDCBA9876543210FEDCBA9876543210")),
    "terminal.mac.master": (KeyType.aes256, bytes(range(64, 96))),
    "pin.aes.a": (KeyType.aes128, bytes(range(96, 112))),
    "pin.aes.b": (KeyType.aes128, bytes(range(112, 128))),
    "ecard.sign": (
        KeyType.ec_p256,
        _EC.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ),
}


def conformance_key_entries() -> list[KeyEntry]:
    return [KeyEntry(label, 1, t, "test", "", m) for label, (t, m) in TEST_KEYS.items()]


def material(label: str) -> bytes:
    return TEST_KEYS[label][1]


class HsmConformance:
    """Subclass and provide the `hsm` fixture."""

    @pytest.mark.parametrize(("label", "make"), [("card.3des", tdes), ("card.sm4", sm4)])
    async def test_card_cryptogram(self, hsm: Hsm, label: str, make: Any) -> None:
        card_key = cardauth.derive_card_key(make(material(label)), CARD_SN)
        factor, challenge = bytes(range(8)), bytes(range(8, 16))
        good = cardauth.internal_auth_cryptogram(card_key, factor, challenge)
        ref = KeyRef(label)
        assert await hsm.verify_card_cryptogram(ref, CARD_SN, factor, challenge, good, deadline_s=T)
        bad = bytes([good[0] ^ 1]) + good[1:]
        assert not await hsm.verify_card_cryptogram(
            ref, CARD_SN, factor, challenge, bad, deadline_s=T
        )
        ext = await hsm.external_auth_cryptogram(ref, CARD_SN, factor, challenge, deadline_s=T)
        assert ext == cardauth.external_auth_cryptogram(card_key, factor, challenge)

    @pytest.mark.parametrize(
        ("label", "algorithm", "reference"),
        [
            (
                "mac.hmac",
                MacAlgorithm.hmac_sha256,
                lambda d: mac.hmac_sha256(hmac_key(material("mac.hmac")), d),
            ),
            ("mac.aes", MacAlgorithm.aes_cmac, lambda d: mac.cmac(aes(material("mac.aes")), d)),
            (
                "zpk.a",
                MacAlgorithm.iso9797_alg3,
                lambda d: mac.iso9797_mac3(tdes(material("zpk.a")), d),
            ),
            ("zpk.a", MacAlgorithm.tdes_cmac, lambda d: mac.cmac(tdes(material("zpk.a")), d)),
        ],
    )
    async def test_mac(self, hsm: Hsm, label: str, algorithm: MacAlgorithm, reference: Any) -> None:
        data = b"POST\n/api/v1/tx\n1764380000\nnonce-nonce-nonce\n" + bytes(range(37))
        out = await hsm.mac_generate(KeyRef(label), algorithm, data, deadline_s=T)
        assert out == reference(data)
        assert await hsm.mac_verify(KeyRef(label), algorithm, data, out, deadline_s=T)
        assert not await hsm.mac_verify(KeyRef(label), algorithm, data + b"!", out, deadline_s=T)

    async def test_arqc_and_arpc(self, hsm: Hsm) -> None:
        imk = tdes(material("emv.imk"))
        session = emv.derive_ac_session_key(emv.derive_icc_master_key_a(imk, PAN, PSN), ATC)
        arqc = emv.generate_ac(session, CDOL1)
        ref = KeyRef("emv.imk")
        assert await hsm.verify_arqc(ref, PAN, PSN, ATC, CDOL1, arqc, deadline_s=T)
        assert not await hsm.verify_arqc(ref, PAN, PSN, ATC, CDOL1 + b"\x00", arqc, deadline_s=T)
        arpc = await hsm.arpc_method_1(ref, PAN, PSN, ATC, arqc, b"00", deadline_s=T)
        assert arpc == emv.arpc_method_1(session, arqc, b"00")

    async def test_arpc_method_2(self, hsm: Hsm) -> None:
        imk = tdes(material("emv.imk"))
        session = emv.derive_ac_session_key(emv.derive_icc_master_key_a(imk, PAN, PSN), ATC)
        arqc = emv.generate_ac(session, CDOL1)
        csu, prop = bytes.fromhex("00820000"), bytes.fromhex("1122")
        arpc = await hsm.arpc_method_2(
            KeyRef("emv.imk"), PAN, PSN, ATC, arqc, csu, prop, deadline_s=T
        )
        assert arpc == emv.arpc_method_2(session, arqc, csu, prop)

    async def test_pin_translation_format4(self, hsm: Hsm) -> None:
        block = pinblock.encrypt_format4(
            aes(material("pin.aes.a")), "1234", PAN, fill=bytes(range(8))
        )
        out = await hsm.translate_pin_format4(
            KeyRef("pin.aes.a"), KeyRef("pin.aes.b"), block, PAN, deadline_s=T
        )
        assert pinblock.decrypt_format4(aes(material("pin.aes.b")), out, PAN) == "1234"
        assert out == pinblock.translate_format4(
            block, aes(material("pin.aes.a")), aes(material("pin.aes.b")), pan=PAN
        )

    async def test_pin_translation(self, hsm: Hsm) -> None:
        block = pinblock.encrypt_format0(tdes(material("zpk.a")), "123456", PAN)
        out = await hsm.translate_pin_format0(
            KeyRef("zpk.a"), KeyRef("zpk.b"), block, PAN, deadline_s=T
        )
        assert pinblock.decrypt_format0(tdes(material("zpk.b")), out, PAN) == "123456"

    async def test_signature(self, hsm: Hsm) -> None:
        signature = await hsm.sign(KeyRef("ecard.sign"), b"e-card token", deadline_s=T)
        _EC.public_key().verify(signature, b"e-card token", ec.ECDSA(hashes.SHA256()))
        assert await hsm.verify_signature(
            KeyRef("ecard.sign"), b"e-card token", signature, deadline_s=T
        )
        assert not await hsm.verify_signature(
            KeyRef("ecard.sign"), b"other", signature, deadline_s=T
        )

    async def test_errors(self, hsm: Hsm) -> None:
        with pytest.raises(KeyNotFound):
            await hsm.mac_generate(KeyRef("absent"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
        with pytest.raises(KeyTypeError):
            await hsm.mac_generate(KeyRef("zpk.a"), MacAlgorithm.aes_cmac, b"x", deadline_s=T)

    async def test_listing_shows_no_material(self, hsm: Hsm) -> None:
        keys = {k.label: k for k in await hsm.list_keys(deadline_s=T)}
        assert set(TEST_KEYS) <= set(keys)
        for label, (_, secret) in TEST_KEYS.items():
            assert secret.hex() not in repr(keys[label]).lower()

    async def test_random(self, hsm: Hsm) -> None:
        a, b = await hsm.random_bytes(16, deadline_s=T), await hsm.random_bytes(16, deadline_s=T)
        assert len(a) == 16 and a != b


class TerminalMacConformance:
    """Per-terminal request signatures (hsm.terminalkeys); subclass with an `hsm`
    fixture once the backend implements verify_terminal_mac."""

    async def test_terminal_mac(self, hsm: Hsm) -> None:
        key = terminalkeys.derive_terminal_mac_key(
            aes(material("terminal.mac.master")), "TH51010000000"
        )
        message = b"POST\n/api/v1/tx\n1764380000\nnonce-nonce-nonce\n" + b"0" * 64
        good = mac.hmac_sha256(key, message)
        ref = KeyRef("terminal.mac.master")
        assert await hsm.verify_terminal_mac(ref, "TH51010000000", message, good, deadline_s=T)
        assert not await hsm.verify_terminal_mac(ref, "TH51010000001", message, good, deadline_s=T)
        assert not await hsm.verify_terminal_mac(
            ref, "TH51010000000", message + b"!", good, deadline_s=T
        )
