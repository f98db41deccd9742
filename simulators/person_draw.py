"""Drawing insured persons from a seeded random stream, fast: `yikatong seed` draws
10^7 of them, so what does not depend on the draw (dates, the fixed part of the ID
numbers, names of employers) is tabled once, and the draws are made without the
overhead of `random.choice` / `random.randrange` but exactly as they make them.
simulators.population gives the persons their place in a population.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass

CERT_REGION = "510104"  # the district in every generated ID number
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
    "彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金"
    "石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
    "万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志"
    "红玉兰文辉鹏飞宇浩然子涵欣怡梓轩雨桐"
)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
BIRTH_FIRST = dt.date(1940, 1, 1)
BIRTH_DAYS = 365 * 80
RETIRED_BORN_BEFORE = dt.date(1966, 1, 1)  # employees born earlier are retired
INSURED_FIRST = dt.date(2010, 1, 1)
INSURED_DAYS = 3650
ID_SEQ_PER_DAY_MAX = 500  # ID numbers per (birth date, gender): 3 digits, odd or even
EMPLOYERS = 499
ACCT_BALANCE_FEN_MAX = 500_000


def id_number(region: str, birth: dt.date, seq: int, gender: str) -> str:
    """A well-formed 18-digit resident ID number (GB 11643 check digit)."""
    odd_even = seq * 2 + (1 if gender == "1" else 0)  # odd for men, even for women
    body = f"{region[:4]}04{birth:%Y%m%d}{odd_even:03d}"
    total = sum(int(c) * w for c, w in zip(body, ID_WEIGHTS, strict=True))
    return body + ID_CHECK[total % 11]


# A person as the stream yields it: Person's fields in order (Person(*row) builds one).
PersonRow = tuple[str, str, str, str, str, dt.date, str, bool, dt.date, str, int]


RETIRED_BIRTH_DAYS = (RETIRED_BORN_BEFORE - BIRTH_FIRST).days  # offsets below: born before


@dataclass(frozen=True)
class _PersonTables:
    """What person_rows() would otherwise compute per person, by drawn number."""

    birth_dates: list[dt.date]  # by birth-day offset
    # By birth-day offset: an ID number's first 14 characters (region, 04, birth date)
    # and their part of the GB 11643 weighted sum; by sequence number: the last 3.
    id_heads: list[tuple[str, int]]
    id_tails: list[tuple[str, int]]
    insured_dates: list[dt.date]  # by insurance-start offset
    employer_names: list[str]  # by employer number - 1


def _weighted(text: str, weights: tuple[int, ...]) -> int:
    return sum(int(c) * w for c, w in zip(text, weights, strict=True))


@functools.cache
def _person_tables() -> _PersonTables:
    """Built on the first draw (not at import: every `yikatong` command imports this)."""
    births = [BIRTH_FIRST + dt.timedelta(days=d) for d in range(BIRTH_DAYS)]
    heads = [f"{CERT_REGION[:4]}04{b:%Y%m%d}" for b in births]
    tails = [f"{n:03d}" for n in range(2 * ID_SEQ_PER_DAY_MAX)]
    return _PersonTables(
        birth_dates=births,
        id_heads=[(h, _weighted(h, ID_WEIGHTS[:14])) for h in heads],
        id_tails=[(t, _weighted(t, ID_WEIGHTS[14:])) for t in tails],
        insured_dates=[INSURED_FIRST + dt.timedelta(days=d) for d in range(INSURED_DAYS)],
        employer_names=[f"单位{n:03d}" for n in range(1, EMPLOYERS + 1)],
    )


def person_rows(rng: random.Random, n: int, region: str) -> Iterator[PersonRow]:
    """The next `n` persons drawn from `rng`, insured in `region`, as rows
    (simulators.population.Person(*row) gives the Person).

    Per person, in this order: gender (random() < 0.5 is a man), a birth day among
    80 years from 1940 (redrawn while that day and gender already have 500 ID
    numbers), employee (random() < 0.7), surname, one or two given characters, the
    insurance start among 10 years from 2010, and for employees an employer 001-499
    and an account balance below 5 000 yuan. Employees born before 1966 are retired.

    The draws are what `rng.choice(seq)` and `rng.randrange(a, b)` return, done the
    way CPython does them (random.py `_randbelow_with_getrandbits`: take bit_length(m)
    random bits, again while the value is >= m, for m = len(seq) or b - a), because
    calling those methods costs more than the rest of the person; the population of
    a seed is pinned by tests/unit/test_population_stream.py."""
    tables = _person_tables()
    birth_dates, id_heads, id_tails = tables.birth_dates, tables.id_heads, tables.id_tails
    insured_dates, employer_names = tables.insured_dates, tables.employer_names
    getrandbits, uniform = rng.getrandbits, rng.random
    surnames, given = SURNAMES, GIVEN
    n_surnames, n_given = len(surnames), len(given)
    k_birth, k_insured = BIRTH_DAYS.bit_length(), INSURED_DAYS.bit_length()
    k_surname, k_given, k_employer = (
        n_surnames.bit_length(),
        n_given.bit_length(),
        EMPLOYERS.bit_length(),
    )
    k_balance = ACCT_BALANCE_FEN_MAX.bit_length()
    # ID numbers are unique: a sequence per (birth day, gender), at most 500 each;
    # issued[2 * day + (gender == "2")] is how many that pair has.
    issued = [0] * (2 * BIRTH_DAYS)
    for i in range(n):
        man = uniform() < 0.5
        while True:
            day = getrandbits(k_birth)
            while day >= BIRTH_DAYS:
                day = getrandbits(k_birth)
            slot = 2 * day + (0 if man else 1)
            seq = issued[slot]
            if seq < ID_SEQ_PER_DAY_MAX:
                issued[slot] = seq + 1
                break
        employee = uniform() < 0.7
        r = getrandbits(k_surname)
        while r >= n_surnames:
            r = getrandbits(k_surname)
        name = surnames[r]
        count = getrandbits(2)  # choice((1, 2)): m = 2 takes 2 bits
        while count >= 2:
            count = getrandbits(2)
        for _ in range(count + 1):
            r = getrandbits(k_given)
            while r >= n_given:
                r = getrandbits(k_given)
            name += given[r]
        head, head_sum = id_heads[day]
        tail, tail_sum = id_tails[seq * 2 + (1 if man else 0)]  # odd for men, even for women
        insured = getrandbits(k_insured)
        while insured >= INSURED_DAYS:
            insured = getrandbits(k_insured)
        if employee:
            r = getrandbits(k_employer)
            while r >= EMPLOYERS:
                r = getrandbits(k_employer)
            employer = employer_names[r]
            balance = getrandbits(k_balance)
            while balance >= ACCT_BALANCE_FEN_MAX:
                balance = getrandbits(k_balance)
        else:
            employer, balance = "", 0
        yield (
            f"{region}{i + 1:012d}",
            region,
            head + tail + ID_CHECK[(head_sum + tail_sum) % 11],
            name,
            "1" if man else "2",
            birth_dates[day],
            "310" if employee else "390",
            employee and day < RETIRED_BIRTH_DAYS,
            insured_dates[insured],
            employer,
            balance,
        )
