"""HSM operation throughput per backend (run by `make bench`, not by `make test`).
Figures go to docs/PERFORMANCE.md with the command that produced them.

Every benchmark runs on uvloop, as the engine does. "in flight" is how many operations
are awaited concurrently (1: each waits for the previous one). The PKCS#11 card
cryptogram is measured both on one card repeated and on 200 distinct cards per round,
so that a cache helping only a repeated card could not pass for throughput. The
`processes` benchmarks run the PKCS#11 backend in worker processes, each with its own
token thread and login (the way the design scales it), and count all their operations.

Pin the run to one core (`taskset -c 1 make bench`) for per-core figures: on these
VMs a wake-up across cores costs ~50-100 µs, which is most of a PKCS#11 or remote
round trip when nothing else runs (docs/PERFORMANCE.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
import uvloop

from hsm import cardauth, emv, mac, terminalkeys
from hsm.keys import aes, hmac_key, tdes
from hsm.keystore import KeyStore
from hsm.pkcs11 import Pkcs11Hsm
from hsm.protocol import KeyRef, MacAlgorithm
from hsm.remote import RemoteHsm
from hsm.soft import SoftHsm
from hsm.terminalkeys import TERMINAL_KEY_CACHE_CAPACITY
from tests.hsm_conformance import ATC, CARD_SN, CDOL1, PAN, PSN, conformance_key_entries, material
from tests.support import TEST_MASTER_KEY_HEX, free_port

T = 5.0
PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FACTOR, CHALLENGE = bytes(range(8)), bytes(range(8, 16))


def run_loop(
    benchmark: Any, make: Callable[[], Coroutine[Any, Any, object]], per_round: int = 200
) -> None:
    """Benchmark `per_round` sequential awaits of one operation in one event loop."""
    loop = uvloop.new_event_loop()

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


TERMINALS = [f"TH{n:011d}" for n in range(200)]
TERMINAL_MESSAGE = b"POST\n/api/v1/tx\n1764380000\nnonce-nonce-nonce\n" + b"0" * 64


@pytest.mark.parametrize("cache", ["off", "on"])
def test_soft_terminal_mac_verify(benchmark: Any, cache: str) -> None:
    """Every request's signature check: 200 distinct terminals per round, each seen
    once per round. "off" derives the terminal key on every call (capacity 0, as
    before the cache); "on" derives each terminal once, then finds it cached."""
    hsm = SoftHsm(
        KeyStore(conformance_key_entries()),
        terminal_key_cache_capacity=0 if cache == "off" else TERMINAL_KEY_CACHE_CAPACITY,
    )
    master = aes(material("terminal.mac.master"))
    tags = [
        mac.hmac_sha256(terminalkeys.derive_terminal_mac_key(master, t), TERMINAL_MESSAGE)
        for t in TERMINALS
    ]
    ref = KeyRef("terminal.mac.master")
    turn = itertools.count()

    def verify() -> Coroutine[Any, Any, bool]:
        i = next(turn) % len(TERMINALS)
        return hsm.verify_terminal_mac(ref, TERMINALS[i], TERMINAL_MESSAGE, tags[i], deadline_s=T)

    run_loop(benchmark, verify, per_round=len(TERMINALS))


def test_soft_ecdsa_verify(benchmark: Any, soft: SoftHsm) -> None:
    loop = uvloop.new_event_loop()
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
    loop = uvloop.new_event_loop()
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


async def in_flight(
    make: Callable[[int], Coroutine[Any, Any, object]], total: int, concurrency: int
) -> None:
    """`total` operations (operation i is `make(i)`), `concurrency` awaited at a time."""

    async def worker(first: int) -> None:
        for i in range(first, total, concurrency):
            assert await make(i)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))


async def open_pkcs11(token: str) -> Pkcs11Hsm:
    return await Pkcs11Hsm.open(
        PKCS11_MODULE,
        token,
        "123456",
        max_waiting=1000,
        deadline_s=10,
        allow_composed_retail_mac=True,
    )


def run_pkcs11(
    benchmark: Any,
    token: str,
    make: Callable[[Pkcs11Hsm, int], Coroutine[Any, Any, object]],
    concurrency: int = 1,
) -> None:
    """Rounds of 200 operations (`make(hsm, i)`, i = 0..199), `concurrency` in flight."""
    loop = uvloop.new_event_loop()
    hsm = loop.run_until_complete(open_pkcs11(token))

    def burst() -> None:
        loop.run_until_complete(in_flight(lambda i: make(hsm, i), 200, concurrency))

    try:
        benchmark.pedantic(burst, rounds=10, iterations=1, warmup_rounds=1)
    finally:
        loop.run_until_complete(hsm.close())
        loop.close()
    benchmark.extra_info["operations_per_round"] = 200
    benchmark.extra_info["in_flight"] = concurrency


def card_cryptograms(cards: int) -> list[tuple[bytes, bytes]]:
    """(card_sn, good cryptogram) for `cards` distinct card serials, by software."""
    master = tdes(material("card.3des"))
    out = []
    for n in range(cards):
        card_sn = CARD_SN[:8] + n.to_bytes(8, "big")
        card_key = cardauth.derive_card_key(master, card_sn)
        out.append((card_sn, cardauth.internal_auth_cryptogram(card_key, FACTOR, CHALLENGE)))
    return out


@pytest.mark.parametrize("concurrency", [1, 8])
def test_pkcs11_card_cryptogram_verify(benchmark: Any, pkcs11_token: str, concurrency: int) -> None:
    """One card, repeated."""
    card_key = cardauth.derive_card_key(tdes(material("card.3des")), CARD_SN)
    good = cardauth.internal_auth_cryptogram(card_key, FACTOR, CHALLENGE)
    ref = KeyRef("card.3des")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h, _: h.verify_card_cryptogram(ref, CARD_SN, FACTOR, CHALLENGE, good, deadline_s=T),
        concurrency,
    )


@pytest.mark.parametrize("concurrency", [1, 8])
def test_pkcs11_card_cryptogram_verify_distinct_cards(
    benchmark: Any, pkcs11_token: str, concurrency: int
) -> None:
    """200 different card serials per round: no card repeats within a round."""
    cards = card_cryptograms(200)
    ref = KeyRef("card.3des")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h, i: h.verify_card_cryptogram(
            ref, cards[i][0], FACTOR, CHALLENGE, cards[i][1], deadline_s=T
        ),
        concurrency,
    )


def test_pkcs11_hmac_verify(benchmark: Any, pkcs11_token: str) -> None:
    data = b"x" * 200
    tag = mac.hmac_sha256(hmac_key(material("mac.hmac")), data)
    ref = KeyRef("mac.hmac")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h, _: h.mac_verify(ref, MacAlgorithm.hmac_sha256, data, tag, deadline_s=T),
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
        lambda h, _: h.verify_arqc(ref, PAN, PSN, ATC, CDOL1, arqc, deadline_s=T),
    )


def test_pkcs11_ecdsa_verify(benchmark: Any, pkcs11_token: str) -> None:
    loop = uvloop.new_event_loop()
    soft = SoftHsm(KeyStore(conformance_key_entries()))
    signature = loop.run_until_complete(soft.sign(KeyRef("ecard.sign"), b"token", deadline_s=T))
    loop.close()
    ref = KeyRef("ecard.sign")
    run_pkcs11(
        benchmark,
        pkcs11_token,
        lambda h, _: h.verify_signature(ref, b"token", signature, deadline_s=T),
    )


# --- PKCS#11 backend in worker processes, each with its own thread and login -----------


def _pkcs11_process(token: str, concurrency: int, orders: Connection) -> None:
    """A benchmark worker process: open the backend, then for every number n received
    run n card verifications on distinct cards and answer; stop on 0."""
    cards = card_cryptograms(200)
    ref = KeyRef("card.3des")

    async def serve() -> None:
        hsm = await open_pkcs11(token)
        orders.send("ready")
        try:
            while n := orders.recv():

                def make(i: int) -> Coroutine[Any, Any, bool]:
                    card_sn, good = cards[i % len(cards)]
                    return hsm.verify_card_cryptogram(
                        ref, card_sn, FACTOR, CHALLENGE, good, deadline_s=T
                    )

                await in_flight(make, n, concurrency)
                orders.send(n)
        finally:
            await hsm.close()

    uvloop.run(serve())


@pytest.mark.parametrize(("processes", "concurrency"), [(1, 8), (2, 1), (2, 8)])
def test_pkcs11_card_cryptogram_verify_processes(
    benchmark: Any, pkcs11_token: str, processes: int, concurrency: int
) -> None:
    """Distinct cards; per round 200 operations in each process. Processes start with
    "spawn" (a forked child would inherit the parent's initialised PKCS#11 library) and
    one after the other: SoftHSM2 answered C_GetTokenInfo with CKR_GENERAL_ERROR once
    when two processes opened its file store at the same moment."""
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    try:
        for _ in range(processes):
            ours, theirs = context.Pipe()
            child = context.Process(
                target=_pkcs11_process, args=(pkcs11_token, concurrency, theirs)
            )
            child.start()
            pipes.append(ours)
            children.append(child)
            assert ours.poll(60) and ours.recv() == "ready"

        def burst() -> None:
            for pipe in pipes:
                pipe.send(200)
            for pipe in pipes:
                assert pipe.poll(60) and pipe.recv() == 200

        benchmark.pedantic(burst, rounds=10, iterations=1, warmup_rounds=1)
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(0)
        for child in children:
            child.join(30)
    benchmark.extra_info["operations_per_round"] = 200 * processes
    benchmark.extra_info["in_flight"] = concurrency * processes
