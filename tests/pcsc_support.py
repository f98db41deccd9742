"""Fixtures for tests that run against a real pcscd with the vsmartcard virtual reader:
`pcscd` starts one pcscd for the whole session (simulators.pcscd.PcscdManager, in its
own network namespace when we are root) and stops it at the end; `insert_card`
serves an `Icc` to a slot from a vpicc thread, returns once pcscd sees the card, and
takes the card out again (and waits until pcscd sees the slot empty) after the test.

Only one pcscd can run per machine. When the machine's PC/SC service is someone
else's — another pcscd runs (its pid is named), or pcscd's runtime directory holds a
socket no pcscd of ours made (systemd's pcscd.socket) — the PC/SC tests are skipped,
and loudly: a `PcscSkippedWarning` and a line in the terminal summary saying how many
were skipped and why (`PcscSkipReport`). On CI (CI=true), where nothing else runs
pcscd and a skip would hide that the PC/SC tests did not run, it is a failure. The
fixtures never remove a file they did not make (simulators.pcscd's owner marker).

The `pcscd` fixture is imported by more than one conftest (integration, bench): each
import is a session fixture of its own, so they share one manager through `_SHARED`
(the first one starts pcscd, the last one to finish stops it) rather than finding
each other's pcscd "busy".

Import the fixtures into a conftest or test module:
    from tests.pcsc_support import insert_card, key_env, pcscd, population  # noqa: F401
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from card.icc import Icc
from card.pcsc import PcscReader
from simulators.card.card import VirtualCard
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager, PcscdNotOurs, PcscdState
from simulators.population import Population, generate
from simulators.vpicc import Vpicc
from tests.support import hsm_env

PRESENCE_TIMEOUT_S = 5.0  # pcscd polls the virtual reader every ~400 ms
SEED, PERSONS = 20261129, 40

InsertCard = Callable[..., Vpicc]


SKIP_PREFIX = "PC/SC tests need their own pcscd: "


class PcscSkippedWarning(UserWarning):
    """The PC/SC tests did not run: the machine's PC/SC service is not ours."""


class PcscSkipReport:
    """A pytest plugin, registered when the PC/SC tests are skipped: counts them and
    says so in the terminal summary, so that a green run cannot hide them."""

    NAME = "yikatong-pcsc-skip-report"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.skipped = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and report.when == "setup" and SKIP_PREFIX in str(report.longrepr):
            self.skipped += 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.write_sep("!", f"{self.skipped} PC/SC tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"why: {self.reason}")
        terminalreporter.write_line(
            "stop that PC/SC service to run them here; on CI (CI=true) this is a failure"
        )


def _skip_loudly(config: pytest.Config, exc: PcscdNotOurs) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"cannot run the PC/SC tests on CI: {exc}")
    if not config.pluginmanager.has_plugin(PcscSkipReport.NAME):
        config.pluginmanager.register(PcscSkipReport(str(exc)), PcscSkipReport.NAME)
    warnings.warn(PcscSkippedWarning(f"PC/SC tests skipped: {exc}"), stacklevel=2)
    pytest.skip(SKIP_PREFIX + str(exc))


@dataclass
class _Shared:
    manager: PcscdManager | None = None
    users: int = 0


_SHARED = _Shared()  # this pytest process's one pcscd (module docstring)


@pytest.fixture(scope="session")
def pcscd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PcscdManager]:
    """The session's pcscd with the vpcd reader (both slots listed once it yields)."""
    if _SHARED.manager is None:
        manager = PcscdManager(tmp_path_factory.mktemp("pcscd"))
        try:
            manager.start()
        except PcscdNotOurs as exc:
            _skip_loudly(request.config, exc)
        _SHARED.manager = manager
    _SHARED.users += 1
    try:
        yield _SHARED.manager
    finally:
        _SHARED.users -= 1
        if _SHARED.users == 0:
            _SHARED.manager.stop()
            _SHARED.manager = None


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
