"""Fixtures for tests that run against a real pcscd with the vsmartcard virtual reader:
`pcscd` starts one pcscd for the whole session (simulators.pcscd.PcscdManager, in its
own network namespace when we are root) and stops it at the end; `insert_card`
serves an `Icc` to a slot from a vpicc thread, returns once pcscd sees the card, and
takes the card out again (and waits until pcscd sees the slot empty) after the test.

Only one pcscd can run per machine. When another one runs, the tests are skipped with
its pid in the reason, except on CI (CI=true), where nothing else runs pcscd and a
skip would hide that the PC/SC tests did not run: there it is a failure.

Import the fixtures into a conftest or test module:
    from tests.pcsc_support import insert_card, key_env, pcscd, population  # noqa: F401
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from card.icc import Icc
from card.pcsc import PcscReader
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdBusy, PcscdManager, PcscdState
from simulators.population import Population, generate
from simulators.vpicc import Vpicc
from tests.support import hsm_env

PRESENCE_TIMEOUT_S = 5.0  # pcscd polls the virtual reader every ~400 ms
SEED, PERSONS = 20261129, 40

InsertCard = Callable[..., Vpicc]


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscdManager]:
    """The session's pcscd with the vpcd reader (both slots listed once it yields)."""
    manager = PcscdManager(tmp_path_factory.mktemp("pcscd"))
    try:
        manager.start()
    except PcscdBusy as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot run the PC/SC tests on CI: {exc}")
        pytest.skip(f"PC/SC tests need their own pcscd: {exc}")
    try:
        yield manager
    finally:
        manager.stop()


def _wait_present(reader_name: str, present: bool) -> bool:
    with PcscReader(reader_name) as reader:
        if present:
            return reader.wait_for_card(PRESENCE_TIMEOUT_S)
        return reader.wait_for_removal(PRESENCE_TIMEOUT_S)


@pytest.fixture
def insert_card(pcscd: PcscdManager) -> Iterator[InsertCard]:
    """`insert_card(icc, slot=0, quickack=True) -> Vpicc`: the card is in the reader
    (pcscd reports it present) when this returns; removed again after the test."""
    inserted: list[tuple[Vpicc, str]] = []

    def insert(icc: Icc, *, slot: int = 0, quickack: bool = True) -> Vpicc:
        vpicc = Vpicc(icc, port=pcscd.port + slot, quickack=quickack)
        vpicc.start()
        inserted.append((vpicc, pcscd.readers[slot]))
        assert vpicc.wait_connected(PRESENCE_TIMEOUT_S), "vpcd did not accept the card"
        assert _wait_present(pcscd.readers[slot], True), "pcscd did not see the card"
        return vpicc

    yield insert
    for vpicc, reader_name in inserted:
        vpicc.stop()
        if pcscd.state is PcscdState.running:
            assert _wait_present(reader_name, False), f"{reader_name} not empty after the test"


def blank_card() -> VirtualCard:
    """A chip with no application: power-on/ATR, SELECT MF 9000, any AID 6A82."""
    return VirtualCard([], generation=3)


@pytest.fixture(scope="session")
def key_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """YIKATONG_HSM_KEY_FILE / _MASTER_KEY of a demo key file made for this session."""
    return hsm_env(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def population() -> Population:
    return generate(SEED, PERSONS)


def person_card(
    population: Population, key_env: dict[str, str], index: int
) -> tuple[VirtualCard, IssuerMasters]:
    """Person `index`'s genuine card, made with the masters of the test key file."""
    from simulators.card.factory import build_card  # imported late: only card tests need it

    masters = IssuerMasters.from_env(key_env)
    return build_card(population.card(index), population.persons[index], masters), masters
