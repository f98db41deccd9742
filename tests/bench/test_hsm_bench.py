"""HSM operation throughput per backend (run by `make bench`, not by `make test`).
Figures go to docs/PERFORMANCE.md with the command that produced them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from hsm import cardauth, emv, mac
from hsm.keys import hmac_key, tdes
from hsm.keystore import KeyStore
from hsm.pkcs11 import Pkcs11Hsm
from hsm.protocol import KeyRef, MacAlgorithm
from hsm.remote import RemoteHsm
from hsm.soft import SoftHsm
from tests.hsm_conformance import ATC, CARD_SN, CDOL1, PAN, PSN, conformance_key_entries, material
from tests.support import TEST_MASTER_KEY_HEX, free_port

T = 5.0
PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FACTOR, CHALLENGE = bytes(range(8)), bytes(range(8, 16))


def run_loop(
    benchmark: Any, make: Callable[[], Coroutine[Any, Any, object]], per_round: int = 200
) -> None:
    """Benchmark `per_round` sequential awaits of one operation in one event loop."""
    loop = asyncio.new_event_loop()

    async def burst() -> None:
        for _ in range(per_round):
            assert await make()

    try:
        benchmark.pedantic(lambda: loop.run_until_complete(burst()), rounds=20, iterations=1)
    finally:
        loop.close()
    benchmark.extra_info["operations_per_round"] = per_round


@pytest.fixture
def soft() -> SoftHsm:
    return SoftHsm(KeyStore(conformance_key_entries()))


def test_soft_card_cryptogram_verify(benchmark: Any, soft: SoftHsm) -> None:
    card_key = cardauth.derive_card_key(tdes(material("card.3des")), CARD_SN)
    good = cardauth.internal_auth_cryptogram(card_key, FACTOR, CHALLENGE)
    ref = KeyRef("card.3des")
    run_loop(
        benchmark,
        lambda: soft.verify_card_cryptogram(ref, CARD_SN, FACTOR, CHALLENGE, good, deadline_s=T),
    )


def test_soft_hmac_verify(benchmark: Any, soft: SoftHsm) -> None:
    data = b"x" * 200
    tag = mac.hmac_sha256(hmac_key(material("mac.hmac")), data)
    ref = KeyRef("mac.hmac")
    run_loop(
        benchmark, lambda: soft.mac_verify(ref, MacAlgorithm.hmac_sha256, data, tag, deadline_s=T)
    )


def test_soft_arqc_verify(benchmark: Any, soft: SoftHsm) -> None:
    session = emv.derive_ac_session_key(
        emv.derive_icc_master_key_a(tdes(material("emv.imk")), PAN, PSN), ATC
    )
    arqc = emv.generate_ac(session, CDOL1)
    ref = KeyRef("emv.imk")
    run_loop(benchmark, lambda: soft.verify_arqc(ref, PAN, PSN, ATC, CDOL1, arqc, deadline_s=T))


def test_soft_ecdsa_verify(benchmark: Any, soft: SoftHsm) -> None:
    loop = asyncio.new_event_loop()
    signature = loop.run_until_complete(soft.sign(KeyRef("ecard.sign"), b"token", deadline_s=T))
    loop.close()
    ref = KeyRef("ecard.sign")
    run_loop(
        benchmark,
        lambda: soft.verify_signature(ref, b"token", signature, deadline_s=T),
        per_round=50,
    )


# --- remote backend: the HSM simulator in its own process, over loopback TCP ----------


@pytest.fixture(scope="module")
def remote_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("remote-bench")
    key_file = tmp / "keys.json"
    KeyStore(conformance_key_entries()).save(key_file, bytes.fromhex(TEST_MASTER_KEY_HEX))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.hsm_server",
            "--port",
            str(port),
            "--key-file",
            str(key_file),
        ],
        env={**os.environ, "YIKATONG_HSM_MASTER_KEY": TEST_MASTER_KEY_HEX},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def run_remote(
    benchmark: Any,
    port: int,
    make: Callable[[RemoteHsm], Coroutine[Any, Any, object]],
    concurrency: int,
) -> None:
    """Rounds of 200 operations, `concurrency` in flight, through a pool of as many."""
    loop = asyncio.new_event_loop()
    client = RemoteHsm("127.0.0.1", port, pool_size=min(concurrency, 64))

    async def burst() -> None:
        async def worker(n: int) -> None:
            for _ in range(n):
                assert await make(client)

        await asyncio.gather(*(worker(200 // concurrency) for _ in range(concurrency)))

    try:
        benchmark.pedantic(
            lambda: loop.run_until_complete(burst()), rounds=10, iterations=1, warmup_rounds=1
        )
    finally:
        loop.run_until_complete(client.close())
        loop.close()
    benchmark.extra_info["operations_per_round"] = 200


@pytest.mark.parametrize("concurrency", [1, 8])
def test_remote_card_cryptogram_verify(benchmark: Any, remote_port: int, concurrency: int) -> None:
    card_key = cardauth.derive_card_key(tdes(material("card.3des")), CARD_SN)
    good = cardauth.internal_auth_cryptogram(card_key, FACTOR, CHALLENGE)
    ref = KeyRef("card.3des")
    run_remote(
        benchmark,
        remote_port,
        lambda h: h.verify_card_cryptogram(ref, CARD_SN, FACTOR, CHALLENGE, good, deadline_s=T),
        concurrency,
    )


@pytest.mark.parametrize("concurrency", [1, 8])
def test_remote_hmac_verify(benchmark: Any, remote_port: int, concurrency: int) -> None:
    data = b"x" * 200
    tag = mac.hmac_sha256(hmac_key(material("mac.hmac")), data)
    ref = KeyRef("mac.hmac")
    run_remote(
        benchmark,
        remote_port,
        lambda h: h.mac_verify(ref, MacAlgorithm.hmac_sha256, data, tag, deadline_s=T),
        concurrency,
    )


# --- PKCS#11 backend: SoftHSM2, every call on the backend's single worker thread -------


@pytest.fixture(scope="module")
def pkcs11_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pkcs11

    root = tmp_path_factory.mktemp("softhsm-bench")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                "bench",
                "--pin",
                "123456",
                "--so-pin",
                "654321",
            ],
            check=True,
            capture_output=True,
        )
        pkcs11.lib(PKCS11_MODULE).reinitialize()

        async def load_keys() -> None:
            hsm = await Pkcs11Hsm.open(
                PKCS11_MODULE, "bench", "123456", max_waiting=1000, deadline_s=10
            )
            try:
                await hsm.import_test_keys(conformance_key_entries(), deadline_s=10)
            finally:
                await hsm.close()

        asyncio.run(load_keys())
        try:
            yield "bench"
        finally:
            pkcs11.lib(PKCS11_MODULE).finalize()


def run_pkcs11(
    benchmark: Any, token: str, make: Callable[[Pkcs11Hsm], Coroutine[Any, Any, object]]
) -> None:
    loop = asyncio.new_event_loop()
    hsm = loop.run_until_complete(
        Pkcs11Hsm.open(
            PKCS11_MODULE,
            token,
            "123456",
            max_waiting=1000,
            deadline_s=10,
            allow_composed_retail_mac=True,
        )
    )

    async def burst() -> None:
        for _ in range(200):
            assert await make(hsm)

    try:
        benchmark.pedantic(
            lambda: loop.run_until_complete(burst()), rounds=10, iterations=1, warmup_rounds=1
        )
    finally:
        loop.run_until_complete(hsm.close())
        loop.close()
    benchmark.extra_info["operations_per_round"] = 200


def test_pkcs11_card_cryptogram_verify(benchmark: Any, pkcs11_token: str) -> None:
    card_key = cardauth.derive_card_key(tdes(material("card.3des")), CARD_SN)
    good = cardauth.internal_auth_cryptogram(card_key, FACTOR, CHALLENGE)
    ref = KeyRef("card.3des")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h: h.verify_card_cryptogram(ref, CARD_SN, FACTOR, CHALLENGE, good, deadline_s=T),
    )


def test_pkcs11_hmac_verify(benchmark: Any, pkcs11_token: str) -> None:
    data = b"x" * 200
    tag = mac.hmac_sha256(hmac_key(material("mac.hmac")), data)
    ref = KeyRef("mac.hmac")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h: h.mac_verify(ref, MacAlgorithm.hmac_sha256, data, tag, deadline_s=T),
    )


def test_pkcs11_arqc_verify(benchmark: Any, pkcs11_token: str) -> None:
    session = emv.derive_ac_session_key(
        emv.derive_icc_master_key_a(tdes(material("emv.imk")), PAN, PSN), ATC
    )
    arqc = emv.generate_ac(session, CDOL1)
    ref = KeyRef("emv.imk")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h: h.verify_arqc(ref, PAN, PSN, ATC, CDOL1, arqc, deadline_s=T),
    )


def test_pkcs11_ecdsa_verify(benchmark: Any, pkcs11_token: str) -> None:
    loop = asyncio.new_event_loop()
    soft = SoftHsm(KeyStore(conformance_key_entries()))
    signature = loop.run_until_complete(soft.sign(KeyRef("ecard.sign"), b"token", deadline_s=T))
    loop.close()
    ref = KeyRef("ecard.sign")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h: h.verify_signature(ref, b"token", signature, deadline_s=T),
    )
