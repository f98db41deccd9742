"""The load tester's pharmacy scenario without an engine: an arrival is one 2102 with
exactly five lines by ID number whose total is its lines' sum, sent from pharmacy
terminals that each generator process has to itself; a mix that needs pharmacy
terminals on a deployment without any is refused before anything is sent, and the
outpatient mix keeps planning 1-5 lines from hospital terminals only."""

from __future__ import annotations

import argparse
import decimal
import random

import pytest

from loadtest.driver import TerminalSpec, WorkerSpec
from loadtest.run import _specs
from loadtest.scenarios import SCENARIOS, Item, PersonRef, Pharmacy, plan
from loadtest.sender import LoadTerminal
from loadtest.world import World
from terminals import wire
from terminals.client import Client, Credentials
from terminals.messages.pharmacy import settle as pharmacy_settle_msg

PERSON = PersonRef("510100000000000001", "510104199001011234", "310", "510100")
CATALOG = [Item("X101", 1250), Item("F201", 880), Item("F301", 35000)]


def _load_terminal(code: str) -> LoadTerminal:
    """A terminal as the driver holds it (its client is never asked to send here)."""
    creds = Credentials(f"T{code}", b"\0" * 32, code, code, "510100", "OP1")
    return LoadTerminal(creds, Client("http://127.0.0.1:1", creds))


def _terminal(code: str) -> TerminalSpec:
    return TerminalSpec(f"T{code}", "00" * 32, code, code, "510100", "OP1")


def _world(hospitals: int, pharmacies: int) -> World:
    return World(
        terminals=[_terminal(f"H{n:011d}") for n in range(hospitals)],
        catalog=CATALOG,
        persons=[PERSON],
        population=1,
        pharmacies=[_terminal(f"P{n:011d}") for n in range(pharmacies)],
    )


def _args(mix: str, workers: int) -> argparse.Namespace:
    return argparse.Namespace(
        workers=workers,
        mix=[(mix, 1)],
        seed=1,
        arrivals="uniform",
        timeout=10.0,
        max_in_flight=100,
        connections=8,
    )


def _specs_for(mix: str, workers: int, world: World) -> list[WorkerSpec]:
    return list(
        _specs(
            _args(mix, workers),
            world,
            mode="closed",
            rate=0.0,
            concurrency=8,
            duration_s=1.0,
            run_token="T00001",
            url="http://127.0.0.1:1",
        )
    )


def test_a_pharmacy_arrival_is_one_2102_with_five_lines_by_id_number() -> None:
    term = _load_terminal("P51010000020")
    scenario = SCENARIOS["pharmacy"]()
    assert isinstance(scenario, Pharmacy) and scenario.settles
    for k in range(20):
        p = plan(random.Random(k), [term], [PERSON], CATALOG, f"S{k}", 5, scenario.lines)
        request = scenario.first(p)
        assert isinstance(request, pharmacy_settle_msg.Input)
        assert wire.infno_of(request) == "2102"
        lines = request.drugdetail
        assert [x.feedetl_sn for x in lines] == ["0001", "0002", "0003", "0004", "0005"]
        for x in lines:
            assert x.det_item_fee_sumamt == (x.pric * x.cnt).quantize(decimal.Decimal("0.01"))
        info = request.druginfo
        assert info.medfee_sumamt == sum(x.det_item_fee_sumamt for x in lines)
        assert (info.mdtrt_cert_type, info.mdtrt_cert_no, info.yk_cred_ref) == (
            "02",
            PERSON.certno,
            "",
        )
        assert (info.psn_no, info.insutype, info.med_type) == (PERSON.psn_no, "310", "41")


def test_each_generator_process_gets_pharmacy_terminals_of_its_own() -> None:
    specs = _specs_for("pharmacy", 4, _world(hospitals=6, pharmacies=3))
    assert len(specs) == 3  # no more processes than pharmacy terminals
    seen = [t.terminal_id for s in specs for t in s.pharmacies]
    assert sorted(seen) == sorted(t.terminal_id for t in _world(6, 3).pharmacies)
    assert all(s.pharmacies for s in specs)


def test_a_pharmacy_mix_without_pharmacy_terminals_is_refused_before_sending() -> None:
    with pytest.raises(SystemExit, match=r"pharmacy terminals .* has none.*--pharmacies"):
        _specs_for("pharmacy", 1, _world(hospitals=3, pharmacies=0))


def test_the_outpatient_mix_needs_and_plans_as_before() -> None:
    specs = _specs_for("outpatient", 4, _world(hospitals=3, pharmacies=0))
    assert len(specs) == 3  # limited by the hospitals only
    assert SCENARIOS["outpatient"].lines is None
    assert SCENARIOS["outpatient"].inst_type == "hospital"
    term = _load_terminal("H51010000001")
    sizes = {
        len(plan(random.Random(k), [term], [PERSON], CATALOG, "S", 5).items) for k in range(60)
    }
    assert sizes == {1, 2, 3, 4, 5}
