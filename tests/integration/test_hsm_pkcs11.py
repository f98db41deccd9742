"""The PKCS#11 backend against a real SoftHSM2 token: it passes the shared conformance
suite (the SM4 case adapted: SoftHSM2 has no SM4), every key object on the token is
sensitive and not extractable and derived keys do not outlive their call, check values
equal the soft backend's, versions resolve as documented, errors map to `hsm.errors`,
the retail MAC is refused unless its composed form is enabled, and many concurrent
asyncio tasks share the one token thread.

python-pkcs11 loads and initialises the module once per process, and SoftHSM2 reads
SOFTHSM2_CONF only in C_Initialize. The token fixture therefore re-initialises the
library after pointing SOFTHSM2_CONF at its own token directory, and finalises it on
teardown, so that test_pkcs11_worker.py (which initialises on first use) sees its own
token whichever module runs first. Nothing else may hold a session at those points:
tests of both modules close what they open.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from engine.hsm_runtime import HsmFailureLog, answer_for
from hsm import cardauth, emv, mac, pinblock, pkcs11_keys
from hsm.errors import (
    AlgorithmUnavailable,
    HsmMisconfigured,
    KeyTypeError,
    KeyUsageError,
    PinBlockError,
)
from hsm.keys import aes, sm4, tdes
from hsm.keystore import KeyEntry, KeyType
from hsm.pkcs11 import Pkcs11Hsm
from hsm.pkcs11_worker import Pkcs11Worker
from hsm.protocol import HsmUnavailable, KeyNotFound, KeyRef, MacAlgorithm
from hsm.soft_admin import check_value
from terminals.results import ResultCode
from tests.hsm_conformance import (
    ATC,
    CARD_SN,
    CDOL1,
    PAN,
    PSN,
    TEST_KEYS,
    HsmConformance,
    TerminalMacConformance,
    conformance_key_entries,
    material,
)

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "yk-hsm"
PIN = "246810"
T = 5.0
PINS = ("--pin", PIN, "--so-pin", "135790")
MAX_WAITING = 1000
RETAIL_MAC_KEYS = {"zpk.a"}  # the one conformance key used for ISO 9797-1 MAC 3


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token holding TEST_KEYS (all but the SM4 key); its label."""
    root = tmp_path_factory.mktemp("softhsm-backend")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, *PINS],
            check=True,
            capture_output=True,
        )
        pkcs11.lib(MODULE).reinitialize()  # C_Initialize again: read our SOFTHSM2_CONF
        refused = asyncio.run(_import(conformance_key_entries()))
        assert set(refused) == {"card.sm4"}
        try:
            yield TOKEN
        finally:
            pkcs11.lib(MODULE).finalize()  # the next user initialises with its own conf


async def _import(entries: list[KeyEntry]) -> dict[str, AlgorithmUnavailable]:
    hsm = await Pkcs11Hsm.open(MODULE, TOKEN, PIN, max_waiting=4, deadline_s=10)
    try:
        return await hsm.import_test_keys(entries, deadline_s=10, retail_mac_keys=RETAIL_MAC_KEYS)
    finally:
        await hsm.close()


@pytest.fixture
async def hsm(token: str) -> AsyncIterator[Pkcs11Hsm]:
    """The backend as tests and simulators run it (composed retail MAC enabled)."""
    backend = await Pkcs11Hsm.open(
        MODULE, token, PIN, max_waiting=MAX_WAITING, deadline_s=10, allow_composed_retail_mac=True
    )
    yield backend
    await backend.close()


class TestPkcs11Conformance(HsmConformance, TerminalMacConformance):
    @pytest.mark.parametrize(("label", "make"), [("card.3des", tdes), ("card.sm4", sm4)])
    async def test_card_cryptogram(self, hsm: Pkcs11Hsm, label: str, make: Any) -> None:
        """SoftHSM2 has no SM4 (no CKK_SM4 key type, no CKM_SM4_ECB), so the SM4 master
        cannot be put on the token: the import refuses it with AlgorithmUnavailable
        naming the mechanism, and the label then does not exist (KeyNotFound). By
        design there is no software fallback. The 3DES case runs unchanged."""
        if label == "card.3des":
            await super().test_card_cryptogram(hsm, label, make)
            return
        entry = KeyEntry(label, 1, KeyType.sm4, "test", "", material(label))
        refused = await hsm.import_test_keys([entry], deadline_s=T)
        assert "CKM_SM4_ECB" in str(refused[label])
        with pytest.raises(KeyNotFound, match=r"card\.sm4"):
            await hsm.verify_card_cryptogram(
                KeyRef(label), CARD_SN, bytes(8), bytes(8), bytes(8), deadline_s=T
            )

    async def test_listing_shows_no_material(self, hsm: Pkcs11Hsm) -> None:
        """As the shared test, less the SM4 key, which this token cannot hold (above)."""
        keys = {k.label: k for k in await hsm.list_keys(deadline_s=T)}
        assert set(TEST_KEYS) - {"card.sm4"} <= set(keys)
        assert not any("#" in label for label in keys)  # retail-MAC companions are hidden
        for label, (_, secret) in TEST_KEYS.items():
            assert secret.hex() not in repr(keys.get(label)).lower()


async def test_check_values_are_computed_by_the_token_and_equal_the_soft_backends(
    hsm: Pkcs11Hsm,
) -> None:
    listed = {(k.label, k.version): k for k in await hsm.list_keys(deadline_s=T)}
    for label, (key_type, secret) in TEST_KEYS.items():
        if key_type is KeyType.sm4:
            continue
        info = listed[(label, 1)]
        assert (info.key_type, info.check_value) == (key_type.value, check_value(key_type, secret))


async def test_every_key_object_is_sensitive_unextractable_and_derived_keys_are_destroyed(
    token: str,
) -> None:
    """Token objects are untouched by operations; the only session objects left after
    them are the session copies of the stored keys that were used (hsm.pkcs11_keys),
    as sensitive and unextractable as their originals and destroyed when the handle
    cache forgets them; no derived key outlives its call."""
    worker = Pkcs11Worker(MODULE, token, PIN, max_waiting=MAX_WAITING)
    await worker.start(deadline_s=10)
    hsm = Pkcs11Hsm(worker, allow_composed_retail_mac=True)

    def key_objects(session: Any, on_token: bool) -> list[tuple[str, bool, bool, str]]:
        found = []
        for object_class in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
            template = {Attribute.CLASS: object_class, Attribute.TOKEN: on_token}
            for obj in list(session.get_objects(template)):
                try:
                    obj[Attribute.VALUE]
                    readable = "VALUE readable"
                except pkcs11.exceptions.AttributeSensitive:
                    readable = "VALUE sensitive"
                found.append(
                    (
                        obj[Attribute.LABEL],
                        obj[Attribute.SENSITIVE],
                        obj[Attribute.EXTRACTABLE],
                        readable,
                    )
                )
        return sorted(found)

    async def listing(on_token: bool) -> list[tuple[str, bool, bool, str]]:
        return await worker.call(lambda s: key_objects(s, on_token), deadline_s=T)

    try:
        before = await listing(on_token=True)
        expected = {label for label, (t, _) in TEST_KEYS.items() if t is not KeyType.sm4}
        assert expected | {"zpk.a#k1"} <= {label for label, *_ in before}
        assert not {label for label, *_ in before if label.endswith("#k1")} - {"zpk.a#k1"}
        assert {(s, x, r) for _, s, x, r in before} == {(True, False, "VALUE sensitive")}
        assert await listing(on_token=False) == []
        master = tdes(material("card.3des"))
        good = cardauth.internal_auth_cryptogram(
            cardauth.derive_card_key(master, CARD_SN), bytes(8), bytes(8)
        )
        assert await hsm.verify_card_cryptogram(
            KeyRef("card.3des"), CARD_SN, bytes(8), bytes(8), good, deadline_s=T
        )
        await hsm.arpc_method_1(KeyRef("emv.imk"), PAN, PSN, ATC, bytes(8), b"00", deadline_s=T)
        await hsm.verify_arqc(KeyRef("emv.imk"), PAN, PSN, ATC, CDOL1, bytes(8), deadline_s=T)
        await hsm.verify_terminal_mac(
            KeyRef("terminal.mac.master"), "T1", b"m", bytes(32), deadline_s=T
        )
        assert await listing(on_token=True) == before
        copies = await listing(on_token=False)
        assert [label for label, *_ in copies] == ["card.3des", "emv.imk", "terminal.mac.master"]
        assert {(s, x, r) for _, s, x, r in copies} == {(True, False, "VALUE sensitive")}
        await worker.call(lambda s: pkcs11_keys.forget_handles(), deadline_s=T)
        assert await listing(on_token=False) == []
    finally:
        await hsm.close()


async def test_session_copies_of_expired_cache_entries_are_destroyed(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every cache entry expiring at once, each operation finds its key anew and
    makes a new session copy; the expired copies are destroyed, not piled up."""
    monkeypatch.setattr(pkcs11_keys, "HANDLE_TTL_S", 0.0)
    hsm = await Pkcs11Hsm.open(MODULE, token, PIN, max_waiting=MAX_WAITING, deadline_s=10)

    def session_keys(session: Any) -> list[str]:
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: False}
        return sorted(obj[Attribute.LABEL] for obj in session.get_objects(template))

    try:
        for _ in range(20):
            out = await hsm.mac_generate(
                KeyRef("mac.aes"), MacAlgorithm.aes_cmac, b"x", deadline_s=T
            )
            assert out == mac.cmac(aes(material("mac.aes")), b"x")
        assert await hsm._worker.call(session_keys, deadline_s=T) == ["mac.aes"]
    finally:
        await hsm.close()


async def test_versions_resolve_to_the_highest_unless_named(hsm: Pkcs11Hsm) -> None:
    keys = {1: bytes(range(16)), 2: bytes(range(1, 17))}
    await hsm.import_test_keys(
        [KeyEntry("ver.aes", v, KeyType.aes128, "test", "", m) for v, m in keys.items()],
        deadline_s=T,
    )
    data = b"versioned"
    newest = await hsm.mac_generate(KeyRef("ver.aes"), MacAlgorithm.aes_cmac, data, deadline_s=T)
    first = await hsm.mac_generate(KeyRef("ver.aes", 1), MacAlgorithm.aes_cmac, data, deadline_s=T)
    assert newest == mac.cmac(aes(keys[2]), data) and first == mac.cmac(aes(keys[1]), data)
    with pytest.raises(KeyNotFound, match=r"no key 'ver\.aes' version 3"):
        await hsm.mac_generate(KeyRef("ver.aes", 3), MacAlgorithm.aes_cmac, data, deadline_s=T)


async def test_errors_map_to_hsm_errors(hsm: Pkcs11Hsm) -> None:
    with pytest.raises(KeyTypeError, match=r"ECDSA signature with key zpk\.a needs an EC key"):
        await hsm.sign(KeyRef("zpk.a"), b"x", deadline_s=T)
    with pytest.raises(KeyTypeError, match="needs an HMAC key, got an AES key"):
        await hsm.mac_generate(KeyRef("mac.aes"), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
    with pytest.raises(KeyTypeError, match="needs a TDES or SM4 key"):
        await hsm.external_auth_cryptogram(
            KeyRef("mac.aes"), CARD_SN, bytes(8), bytes(8), deadline_s=T
        )
    block = pinblock.encrypt_format0(tdes(material("zpk.a")), "1234", PAN)
    with pytest.raises(PinBlockError):  # valid block, wrong PAN: nothing re-enciphered
        await hsm.translate_pin_format0(
            KeyRef("zpk.a"), KeyRef("zpk.b"), block, "6212345678901299", deadline_s=T
        )
    with pytest.raises(HsmUnavailable, match="exceeded 0s"):
        await hsm.list_keys(deadline_s=0)
    assert not await hsm.verify_signature(KeyRef("ecard.sign"), b"x", b"not DER", deadline_s=T)


async def test_retail_mac_and_arqc_are_refused_unless_the_composed_form_is_enabled(
    token: str,
) -> None:
    strict = await Pkcs11Hsm.open(MODULE, token, PIN, max_waiting=4, deadline_s=10)
    try:
        with pytest.raises(AlgorithmUnavailable, match="no ISO 9797-1 MAC algorithm 3"):
            await strict.mac_generate(
                KeyRef("zpk.a"), MacAlgorithm.iso9797_alg3, b"x", deadline_s=T
            )
        with pytest.raises(AlgorithmUnavailable, match="allow_composed_retail_mac"):
            await strict.verify_arqc(
                KeyRef("emv.imk"), PAN, PSN, ATC, CDOL1, bytes(8), deadline_s=T
            )
        out = await strict.mac_generate(KeyRef("zpk.a"), MacAlgorithm.tdes_cmac, b"x", deadline_s=T)
        assert out == mac.cmac(tdes(material("zpk.a")), b"x")
    finally:
        await strict.close()


async def test_many_concurrent_tasks_share_the_one_token_thread(hsm: Pkcs11Hsm) -> None:
    imk = tdes(material("emv.imk"))
    session = emv.derive_ac_session_key(emv.derive_icc_master_key_a(imk, PAN, PSN), ATC)

    async def one(i: int) -> None:
        data = i.to_bytes(4, "big") * (1 + i % 7)
        kind = i % 4
        if kind == 0:
            out = await hsm.mac_generate(
                KeyRef("zpk.a"), MacAlgorithm.iso9797_alg3, data, deadline_s=T
            )
            assert out == mac.iso9797_mac3(tdes(material("zpk.a")), data)
        elif kind == 1:
            arqc = emv.generate_ac(session, data)
            assert await hsm.verify_arqc(KeyRef("emv.imk"), PAN, PSN, ATC, data, arqc, deadline_s=T)
        elif kind == 2:
            signature = await hsm.sign(KeyRef("ecard.sign"), data, deadline_s=T)
            assert await hsm.verify_signature(KeyRef("ecard.sign"), data, signature, deadline_s=T)
        else:
            out = await hsm.mac_generate(
                KeyRef("mac.hmac"), MacAlgorithm.hmac_sha256, data, deadline_s=T
            )
            assert await hsm.mac_verify(
                KeyRef("mac.hmac"), MacAlgorithm.hmac_sha256, data, out, deadline_s=T
            )

    await asyncio.gather(*(one(i) for i in range(200)))
    token_threads = [t for t in threading.enumerate() if t.name.startswith("pkcs11")]
    assert len(token_threads) == 1


async def test_a_key_whose_usage_forbids_the_operation_is_misconfiguration(
    hsm: Pkcs11Hsm,
) -> None:
    """A terminal MAC master on the token without CKA_DERIVE, and an HMAC key without
    CKA_SIGN: the token refuses with CKR_KEY_FUNCTION_NOT_PERMITTED, which is
    `KeyUsageError` (misconfiguration: no retry clears it), naming the operation and
    key, answered 503 hsm_misconfigured without Retry-After."""
    no_derive = KeyEntry("usage.noderive", 1, KeyType.aes256, "test", "", bytes(range(32)))
    no_sign = KeyEntry("usage.nosign", 1, KeyType.hmac, "test", "", bytes(range(32)))

    def create(session: Any, _: Any) -> None:
        pkcs11_keys.forget_handles()
        session.create_object(
            pkcs11_keys._secret(
                no_derive,
                pkcs11.KeyType.AES,
                no_derive.material,
                label=no_derive.label,
                encrypt=True,
                decrypt=True,
                sign=True,
            )
        )
        session.create_object(
            pkcs11_keys._secret(
                no_sign,
                pkcs11.KeyType.GENERIC_SECRET,
                no_sign.material,
                label=no_sign.label,
                verify=True,
            )
        )

    await hsm._run("test key creation", create, T)
    for _ in range(2):  # the same answer on a retry
        with pytest.raises(KeyUsageError, match=r"terminal MAC with key usage\.noderive"):
            await hsm.verify_terminal_mac(
                KeyRef(no_derive.label), "T1", b"m", bytes(32), deadline_s=T
            )
    with pytest.raises(KeyUsageError, match=r"usage\.nosign.*do not permit") as raised:
        await hsm.mac_generate(KeyRef(no_sign.label), MacAlgorithm.hmac_sha256, b"x", deadline_s=T)
    assert isinstance(raised.value, HsmMisconfigured)
    answer = answer_for(raised.value, failures=HsmFailureLog())
    assert (answer.code, answer.status, answer.retry_after) == (
        ResultCode.hsm_misconfigured,
        503,
        False,
    )
