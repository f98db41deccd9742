"""A seeded synthetic population: institutions (hospitals of every level and
pharmacies, in the home region and a neighbouring one), their terminals and operators,
a catalog with 甲/乙/丙 items and price ceilings, and insured persons (employees with
personal accounts, employed and retired; residents without).

The same seed always gives the same population, so the HIS simulator knows every
institution, terminal and person without reading the database. Terminal keys are not
part of it: they are derived from the HSM's terminal MAC master (simulators.keys).

This module is the pure generator. `stream()` gives the persons as a lazy iterator of
rows (drawn by simulators.person_draw), so that `yikatong seed` can write 10^7 of them
in flat memory; `generate()` is the same stream collected into `Person` objects. Both
draw from one `random.Random(seed)` in one order: institutions, catalog, then persons.
simulators.population_load writes a population with COPY (`load()` below is its entry
point for a `Population` in memory).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulators.person_draw import PersonRow, person_rows

if TYPE_CHECKING:
    import asyncpg

HOME_REGION = "510100"  # Chengdu: most institutions and most insured persons
NEIGHBOUR_REGION = "510700"  # Mianyang: every 5th institution, every 10th person
LESHAN_REGION = "511100"  # Leshan: every 10th person (insured there, treated here)
# Persons insured outside the home region, by index % 10 (simulators.person_draw).
INSURED_ELSEWHERE = {7: NEIGHBOUR_REGION, 8: LESHAN_REGION}
FILING_SINCE = dt.date(2020, 1, 1)
LEVELS = ("community", "1", "2", "3")


@dataclass(frozen=True)
class Institution:
    fixmedins_code: str
    fixmedins_name: str
    admdvs: str
    level: str
    inst_type: str
    terminal_id: str
    opter: str


@dataclass(frozen=True)
class CatalogEntry:
    med_list_codg: str
    name: str
    chrgitm_lv: str
    list_type: str
    price_ceiling_fen_per_unit: int | None
    selfpay_prop_bp: int
    typical_price_fen: int


@dataclass(frozen=True)
class Person:
    psn_no: str
    insuplc_admdvs: str
    certno: str
    psn_name: str
    gend: str
    brdy: dt.date
    insutype: str
    retired: bool
    psn_insu_date: dt.date
    emp_name: str
    acct_balance_fen: int

    def row(self) -> PersonRow:
        """The fields in declaration order, which is also the `persons` columns' order."""
        return (
            self.psn_no,
            self.insuplc_admdvs,
            self.certno,
            self.psn_name,
            self.gend,
            self.brdy,
            self.insutype,
            self.retired,
            self.psn_insu_date,
            self.emp_name,
            self.acct_balance_fen,
        )


# The `persons` columns the seed writes: Person's fields, in the order of a PersonRow.
PERSON_COLUMNS = tuple(Person.__dataclass_fields__)


@dataclass(frozen=True)
class Card:
    """The social security card issued to one person (DOMAIN.md §3.2), with its
    financial application's PAN. `status` and `expiry_date` are the issuer's record,
    which the engine holds; the chip carries the same dates."""

    psn_no: str
    card_sn: str  # 卡识别码, 32 hex digits: region, RID D156000005, serial, FFFFFFFF
    card_no: str  # 社保卡号, 9 ASCII characters
    generation: int  # 2: 3DES, 3: SM4 (EF05 record 03 "2.00" / "3.00")
    card_type: str  # 卡类别, 1 ASCII character
    init_org: str  # 初始化机构编号, 12 characters
    issue_date: dt.date
    expiry_date: dt.date
    status: str  # "active" or "revoked"
    pin: str  # the holder's PIN, 6 digits (simulation only: the issuer never knows it)
    pan: str  # 19-digit UnionPay debit PAN (Luhn), PAN sequence number "00"

    def usable_on(self, day: dt.date) -> bool:
        """Neither revoked nor expired on `day` (what the engine's 1101 checks)."""
        return self.status == "active" and self.expiry_date >= day

    def __repr__(self) -> str:  # STYLE.md §10: no card numbers, PAN or PIN in logs
        return f"Card(psn_no={self.psn_no!r}, card_sn={self.card_sn[:6]}..., gen={self.generation})"


# Deterministic card facts by person index, without touching the population's random
# stream (so the persons of a seed stay what they were before cards existed).
EXPIRED_EVERY, EXPIRED_AT = 97, 13  # persons whose card has expired
REVOKED_EVERY, REVOKED_AT = 89, 11  # persons whose card was revoked (reported lost)
SERIAL_MULTIPLIER = 0x9E3779B1  # odd, so index -> serial is a bijection mod 2**32


def _validity(first: dt.date, days: int) -> list[tuple[dt.date, dt.date]]:
    """(issue, expiry) for issue dates first + 0..days-1: ten years of validity, and a
    card issued on 29 February expires on 1 March."""
    out = []
    for offset in range(days):
        issue = first + dt.timedelta(days=offset)
        leap_day = (issue.month, issue.day) == (2, 29)
        expiry = dt.date(issue.year + 10, 3, 1) if leap_day else issue.replace(year=issue.year + 10)
        out.append((issue, expiry))
    return out


# Tables, not date arithmetic per card: the issue date cycles through these by index.
EXPIRED_VALIDITY = _validity(dt.date(2014, 3, 1), 365)
GEN2_VALIDITY = _validity(dt.date(2018, 1, 1), 1000)
GEN3_VALIDITY = _validity(dt.date(2020, 1, 1), 1800)

# The `cards` columns, in the order of card_record()'s tuple.
CARD_COLUMNS = (
    "card_sn",
    "card_no",
    "psn_no",
    "insuplc_admdvs",
    "generation",
    "status",
    "issue_date",
    "expiry_date",
)
CardRecord = tuple[str, str, str, str, int, str, dt.date, dt.date]


def card_record(index: int, psn_no: str, region: str) -> CardRecord:
    """The issuer's record of the card of the person at `index` (0-based), as the
    `cards` table holds it (CARD_COLUMNS); card_for() adds what only the chip knows.

    About a third are generation 2 (3DES), the rest generation 3 (SM4); every 97th
    card (from index 13) has expired and every 89th (from index 11) is revoked, so
    tests and simulators find such cards at fixed indexes."""
    serial = (index * SERIAL_MULTIPLIER + 0x1234567) % 2**32
    generation = 2 if index % 3 == 0 else 3
    if index % EXPIRED_EVERY == EXPIRED_AT:
        issue, expiry = EXPIRED_VALIDITY[index % 365]
    elif generation == 2:
        issue, expiry = GEN2_VALIDITY[index % 1000]
    else:
        issue, expiry = GEN3_VALIDITY[index % 1800]
    return (
        f"{region}D156000005{serial:08X}FFFFFFFF",
        f"S{index + 1:08d}",
        psn_no,
        region,
        generation,
        "revoked" if index % REVOKED_EVERY == REVOKED_AT else "active",
        issue,
        expiry,
    )


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def card_for(index: int, person: Person) -> Card:
    """The card of the person at `index` (0-based) in `Population.persons`."""
    card_sn, card_no, psn_no, region, generation, status, issue, expiry = card_record(
        index, person.psn_no, person.insuplc_admdvs
    )
    pan_body = f"623{index + 1:015d}"
    return Card(
        psn_no=psn_no,
        card_sn=card_sn,
        card_no=card_no,
        generation=generation,
        card_type="3",
        init_org=f"{region}000000",
        issue_date=issue,
        expiry_date=expiry,
        status=status,
        pin=f"{(index * 7919 + 123457) % 1_000_000:06d}",
        pan=pan_body + luhn_digit(pan_body),
    )


FilingRecord = tuple[str, str, str, str, dt.date, dt.date | None]
FILING_COLUMNS = (
    "insuplc_admdvs",
    "psn_no",
    "mdtrtarea_admvs",
    "kind",
    "begndate",
    "enddate",
)


def filing_record(index: int, psn_no: str, insuplc: str) -> FilingRecord | None:
    """The seeded cross-region filings (engine migration 0014), by person index: half
    of the Mianyang-insured live in Chengdu (filed there), a quarter of the
    Leshan-insured were referred to Chengdu, and every 10th Chengdu-insured person
    (index % 10 == 3) lives in Mianyang; everyone else treated away is unfiled."""
    if insuplc == NEIGHBOUR_REGION and index % 20 == 7:
        return (insuplc, psn_no, HOME_REGION, "filed", FILING_SINCE, None)
    if insuplc == LESHAN_REGION and index % 40 == 8:
        return (insuplc, psn_no, HOME_REGION, "referral", FILING_SINCE, None)
    if insuplc == HOME_REGION and index % 10 == 3:
        return (insuplc, psn_no, NEIGHBOUR_REGION, "filed", FILING_SINCE, None)
    return None


@dataclass
class Population:
    seed: int
    institutions: list[Institution] = field(default_factory=list)
    catalog: list[CatalogEntry] = field(default_factory=list)
    persons: list[Person] = field(default_factory=list)

    def card(self, index: int) -> Card:
        """The card of `persons[index]` (cards are derived, not stored)."""
        return card_for(index, self.persons[index])

    def filing(self, index: int) -> FilingRecord | None:
        """The cross-region filing of `persons[index]`, if it has one."""
        p = self.persons[index]
        return filing_record(index, p.psn_no, p.insuplc_admdvs)


def _institutions(rng: random.Random, hospitals: int, pharmacies: int) -> list[Institution]:
    out = []
    for i in range(hospitals + pharmacies):
        pharmacy = i >= hospitals
        region = NEIGHBOUR_REGION if i % 5 == 4 else HOME_REGION
        kind = "P" if pharmacy else "H"
        code = f"{kind}{region}{i:05d}"
        level = "community" if pharmacy else LEVELS[i % len(LEVELS)]
        name = f"{'药房' if pharmacy else '医院'}{i:03d}号" + (
            "(绵阳)" if region == NEIGHBOUR_REGION else ""
        )
        out.append(
            Institution(
                code,
                name,
                region,
                level,
                "pharmacy" if pharmacy else "hospital",
                f"T{code}",
                f"OP{i:05d}",
            )
        )
    rng.shuffle(out)
    return sorted(out, key=lambda inst: inst.fixmedins_code)


# The treating region's own price ceilings (engine migration 0015): Mianyang caps every
# item that has a provincial ceiling at 90 % of it; Chengdu uses the province's.
REGIONAL_CEILING_BP = {NEIGHBOUR_REGION: 9_000}


def regional_prices(catalog: list[CatalogEntry]) -> list[tuple[str, str, int]]:
    """(region, med_list_codg, ceiling fen per unit) of every regional price ceiling."""
    return [
        (region, c.med_list_codg, c.price_ceiling_fen_per_unit * bp // 10_000)
        for region, bp in REGIONAL_CEILING_BP.items()
        for c in catalog
        if c.price_ceiling_fen_per_unit is not None
    ]


def _catalog(rng: random.Random, items: int) -> list[CatalogEntry]:
    out = []
    for i in range(items):
        roll = rng.random()
        lv = "01" if roll < 0.5 else ("02" if roll < 0.85 else "03")
        list_type = rng.choice(("101", "102", "201", "301"))
        price_fen = rng.choice((50, 120, 880, 1250, 2400, 5600, 12800, 35000))
        ceiling = None
        if list_type in ("201", "301") and rng.random() < 0.4:
            ceiling = price_fen - price_fen // rng.choice((5, 10, 20))
        prop = rng.choice((500, 1000, 2000, 3000)) if lv == "02" else 0
        code = f"{'X' if list_type.startswith('1') else 'F'}{list_type}{i:08d}"
        out.append(CatalogEntry(code, f"目录项目{i:04d}", lv, list_type, ceiling, prop, price_fen))
    return out


@dataclass(frozen=True)
class PopulationStream:
    """A population whose persons are still to be drawn: iterate `persons` once."""

    seed: int
    size: int
    institutions: list[Institution]
    catalog: list[CatalogEntry]
    persons: Iterator[PersonRow]


def insured_elsewhere(rows: Iterator[PersonRow], regions: dict[int, str]) -> Iterator[PersonRow]:
    """The person of index i insured in `regions[i % 10]` where that names a region:
    the same draws, another region (and so psn_no, whose first six digits it is)."""
    for i, row in enumerate(rows):
        region = regions.get(i % 10)
        yield row if region is None else (f"{region}{row[0][6:]}", region, *row[2:])


def stream(
    seed: int, persons: int, *, hospitals: int = 20, pharmacies: int = 10, items: int = 300
) -> PopulationStream:
    rng = random.Random(seed)
    institutions = _institutions(rng, hospitals, pharmacies)
    catalog = _catalog(rng, items)
    rows = insured_elsewhere(person_rows(rng, persons, HOME_REGION), INSURED_ELSEWHERE)
    return PopulationStream(seed, persons, institutions, catalog, rows)


def generate(
    seed: int, persons: int, *, hospitals: int = 20, pharmacies: int = 10, items: int = 300
) -> Population:
    s = stream(seed, persons, hospitals=hospitals, pharmacies=pharmacies, items=items)
    return Population(seed, s.institutions, s.catalog, [Person(*row) for row in s.persons])


async def load(conn: asyncpg.Connection, pop: Population, *, timeout_s: float = 600.0) -> None:
    """Write the population in one transaction (COPY for the bulk tables), as
    `yikatong seed` writes a streamed one."""
    from simulators.population_load import load_population  # which imports this module

    await load_population(conn, pop, timeout_s=timeout_s)
