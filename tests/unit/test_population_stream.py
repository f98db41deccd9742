"""The population of a seed does not change: the fast person stream draws exactly
what the original generator (kept below as the reference, with rng.choice and
rng.randrange) drew, generate() is that stream collected, cards are what they were,
and a digest of one population, taken before the stream existed, still holds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random

import pytest

from simulators.person_draw import GIVEN, SURNAMES, id_number, person_rows
from simulators.population import (
    HOME_REGION,
    INSURED_ELSEWHERE,
    Card,
    Person,
    card_for,
    generate,
    luhn_digit,
    stream,
)


def reference_persons(rng: random.Random, n: int) -> list[Person]:
    """The generator as it was written before the stream (the specification)."""
    out = []
    per_day: dict[tuple[dt.date, str], int] = {}
    for i in range(n):
        gend = "1" if rng.random() < 0.5 else "2"
        while True:
            birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 80))
            seq = per_day.get((birth, gend), 0)
            if seq < 500:
                per_day[(birth, gend)] = seq + 1
                break
        employee = rng.random() < 0.7
        retired = employee and birth.year < 1966
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        out.append(
            Person(
                psn_no=f"{HOME_REGION}{i + 1:012d}",
                insuplc_admdvs=HOME_REGION,
                certno=id_number("510104", birth, seq, gend),
                psn_name=name,
                gend=gend,
                brdy=birth,
                insutype="310" if employee else "390",
                retired=retired,
                psn_insu_date=dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(0, 3650)),
                emp_name=f"单位{rng.randrange(1, 500):03d}" if employee else "",
                acct_balance_fen=rng.randrange(0, 500_000) if employee else 0,
            )
        )
    return out


def reference_card(index: int, person: Person) -> Card:
    """card_for as it was written before card records were tabled."""
    serial = (index * 0x9E3779B1 + 0x1234567) % 2**32
    generation = 2 if index % 3 == 0 else 3
    if index % 97 == 13:
        issue = dt.date(2014, 3, 1) + dt.timedelta(days=index % 365)
    elif generation == 2:
        issue = dt.date(2018, 1, 1) + dt.timedelta(days=index % 1000)
    else:
        issue = dt.date(2020, 1, 1) + dt.timedelta(days=index % 1800)
    leap_day = (issue.month, issue.day) == (2, 29)
    expiry = dt.date(issue.year + 10, 3, 1) if leap_day else issue.replace(year=issue.year + 10)
    pan_body = f"623{index + 1:015d}"
    return Card(
        psn_no=person.psn_no,
        card_sn=f"{person.insuplc_admdvs}D156000005{serial:08X}FFFFFFFF",
        card_no=f"S{index + 1:08d}",
        generation=generation,
        card_type="3",
        init_org=f"{person.insuplc_admdvs}000000",
        issue_date=issue,
        expiry_date=expiry,
        status="revoked" if index % 89 == 11 else "active",
        pin=f"{(index * 7919 + 123457) % 1_000_000:06d}",
        pan=pan_body + luhn_digit(pan_body),
    )


@pytest.mark.parametrize("seed", [0, 1, 11, 4242, 20261129])
def test_stream_draws_what_the_reference_generator_drew(seed: int) -> None:
    expected = reference_persons(random.Random(seed), 4000)
    assert [Person(*row) for row in person_rows(random.Random(seed), 4000, HOME_REGION)] == expected


def test_stream_keeps_drawing_after_the_rest_of_the_stream() -> None:
    # The rng is shared with what follows; the stream must leave it where the
    # reference leaves it.
    a, b = random.Random(9), random.Random(9)
    reference_persons(a, 1000)
    list(person_rows(b, 1000, HOME_REGION))
    assert a.random() == b.random()


def test_generate_is_the_stream_collected() -> None:
    pop = generate(5, 500, hospitals=4, pharmacies=2, items=50)
    s = stream(5, 500, hospitals=4, pharmacies=2, items=50)
    assert (pop.institutions, pop.catalog) == (s.institutions, s.catalog)
    assert pop.persons == [Person(*row) for row in s.persons]
    assert [p.row() for p in pop.persons] == [
        row for row in stream(5, 500, hospitals=4, pharmacies=2, items=50).persons
    ]


def test_cards_are_what_they_were() -> None:
    pop = generate(20261129, 6000)
    for i, p in enumerate(pop.persons):
        assert card_for(i, p) == reference_card(i, p)


def test_population_digest_taken_before_the_stream_still_holds() -> None:
    pop = generate(20261129, 20_000)
    h = hashlib.sha256()
    for x in [*pop.institutions, *pop.catalog]:
        h.update(repr(x).encode())
    for i, p in enumerate(pop.persons):
        # Persons insured elsewhere (INSURED_ELSEWHERE) are drawn exactly as before;
        # only their region (and so their psn_no and card) differs.
        assert p.insuplc_admdvs == INSURED_ELSEWHERE.get(i % 10, HOME_REGION)
        assert p.psn_no.startswith(p.insuplc_admdvs)
        p = dataclasses.replace(p, psn_no=HOME_REGION + p.psn_no[6:], insuplc_admdvs=HOME_REGION)
        c = card_for(i, p)
        h.update(repr(p).encode())
        fields = (c.card_sn, c.card_no, c.generation, c.card_type, c.init_org)
        h.update(repr((*fields, c.issue_date, c.expiry_date, c.status, c.pin, c.pan)).encode())
    assert h.hexdigest() == "7c87a71f7cc3ac0f6b83f4e59f66efb85976d55eae22e888b094cf94cb8ec497"
