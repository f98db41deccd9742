"""What the generator knows of the deployment it loads: terminals of hospitals and of
pharmacies (with the keys they sign with), catalog items and a sample of insured
persons.

With a database URL the facts are read from the engine's own database — any
population size, seeded by whatever tool — and the persons are a uniform random
sample (`TABLESAMPLE BERNOULLI`), so a run against 10^7 persons touches rows all over
the table as real traffic would. Without one they are regenerated from the
population's seed, as the HIS simulator does (small populations only: it rebuilds
every person in memory).

Terminal keys come from the demo key file the engine's soft HSM opens
(simulators.keys): a real terminal receives its key at key injection.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from loadtest.driver import TerminalSpec
from loadtest.scenarios import Item, PersonRef
from simulators.population import generate

QUERY_TIMEOUT_S = 120.0
# Prices for catalog items whose typical price is not in the database (only the
# ceiling is): the population generator's price points.
PRICE_POINTS_FEN = (50, 120, 880, 1250, 2400, 5600, 12800, 35000)


class WorldError(Exception):
    """The deployment lacks what the load needs (no hospitals, no persons...)."""


@dataclass(frozen=True)
class World:
    terminals: list[TerminalSpec]  # hospitals'
    catalog: list[Item]
    persons: list[PersonRef]
    population: int  # insured persons in the engine's database (or the seed's size)
    pharmacies: list[TerminalSpec] = field(default_factory=list)  # pharmacies' terminals

    def of_kind(self, inst_type: str) -> list[TerminalSpec]:
        return self.pharmacies if inst_type == "pharmacy" else self.terminals


def _terminal(row: tuple[str, str, str, str, str], keys: Callable[[str], bytes]) -> TerminalSpec:
    terminal_id, code, name, admdvs, opter = row
    return TerminalSpec(terminal_id, keys(terminal_id).hex(), code, name, admdvs, opter)


def _price(code: str, ceiling_fen: int | None, rng: random.Random) -> int:
    if ceiling_fen is not None:
        return ceiling_fen
    return rng.choice(PRICE_POINTS_FEN)


TERMINALS_SQL = (
    "SELECT t.terminal_id, t.fixmedins_code, i.fixmedins_name, i.admdvs,"
    "       (SELECT min(o.opter) FROM operators o WHERE o.fixmedins_code = i.fixmedins_code)"
    " FROM terminals t JOIN institutions i USING (fixmedins_code)"
    " WHERE t.active AND i.inst_type = $2"
    " ORDER BY t.terminal_id LIMIT $1"
)


async def from_database(
    dsn: str, keys: Callable[[str], bytes], terminals: int, sample: int, seed: int
) -> World:
    """`terminals` of each kind at most; no pharmacy terminal is not an error here
    (only a mix with the pharmacy scenario needs them)."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        rows = await conn.fetch(TERMINALS_SQL, terminals, "hospital", timeout=QUERY_TIMEOUT_S)
        shops = await conn.fetch(TERMINALS_SQL, terminals, "pharmacy", timeout=QUERY_TIMEOUT_S)
        items = await conn.fetch(
            "SELECT med_list_codg, price_ceiling_fen_per_unit FROM catalog_items"
            " ORDER BY med_list_codg",
            timeout=QUERY_TIMEOUT_S,
        )
        population = int(
            await conn.fetchval("SELECT count(*) FROM persons", timeout=QUERY_TIMEOUT_S)
        )
        if population == 0:
            raise WorldError("the database holds no persons: seed it first (yikatong seed)")
        percent = min(100.0, sample * 110.0 / population)
        people = await conn.fetch(
            "SELECT psn_no, certno, insutype, insuplc_admdvs"
            f" FROM persons TABLESAMPLE BERNOULLI ({percent:.6f}) REPEATABLE ($1) LIMIT $2",
            seed % 2**31,
            sample,
            timeout=QUERY_TIMEOUT_S,
        )
    finally:
        await conn.close()
    if not rows or any(r[4] is None for r in rows):
        raise WorldError("no active hospital terminal with an operator in the database")
    shops = [r for r in shops if r[4] is not None]
    if not items:
        raise WorldError("the catalog is empty")
    rng = random.Random(seed)
    return World(
        terminals=[_terminal(tuple(r), keys) for r in rows],
        catalog=[Item(r[0], _price(r[0], r[1], rng)) for r in items],
        persons=[PersonRef(*r) for r in people],
        population=population,
        pharmacies=[_terminal(tuple(r), keys) for r in shops],
    )


def from_seed(
    seed: int,
    persons: int,
    keys: Callable[[str], bytes],
    terminals: int,
    *,
    hospitals: int,
    pharmacies: int,
) -> World:
    pop = generate(seed, persons, hospitals=hospitals, pharmacies=pharmacies)

    def of_kind(inst_type: str) -> list[TerminalSpec]:
        insts = [i for i in pop.institutions if i.inst_type == inst_type][:terminals]
        return [
            _terminal((i.terminal_id, i.fixmedins_code, i.fixmedins_name, i.admdvs, i.opter), keys)
            for i in insts
        ]

    hospital_terminals = of_kind("hospital")
    if not hospital_terminals:
        raise WorldError("the population has no hospitals")
    return World(
        terminals=hospital_terminals,
        catalog=[Item(c.med_list_codg, c.typical_price_fen) for c in pop.catalog],
        persons=[PersonRef(p.psn_no, p.certno, p.insutype, p.insuplc_admdvs) for p in pop.persons],
        population=len(pop.persons),
        pharmacies=of_kind("pharmacy"),
    )
