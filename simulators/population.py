"""A seeded synthetic population: institutions (hospitals of every level and
pharmacies, in the home region and a neighbouring one), their terminals and operators,
a catalog with 甲/乙/丙 items and price ceilings, and insured persons (employees with
personal accounts, employed and retired; residents without).

The same seed always gives the same population, so the HIS simulator knows every
institution, terminal and person without reading the database. Terminal keys are not
part of it: they are derived from the HSM's terminal MAC master (simulators.keys). `load()` writes it
with COPY (100 000 persons in seconds) and funds the personal accounts with one
balanced opening journal entry per insured region and scheme.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

import asyncpg

from settlement import ledger

HOME_REGION = "510100"  # Chengdu, the region of the shipped policy files
NEIGHBOUR_REGION = "510700"  # Mianyang: treating region for cross-region visits
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
LEVELS = ("community", "1", "2", "3")
OPENING_ENTRY_ACCOUNTS = 200
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_number(region: str, birth: dt.date, seq: int, gender: str) -> str:
    """A well-formed 18-digit resident ID number (GB 11643 check digit)."""
    odd_even = seq * 2 + (1 if gender == "1" else 0)  # odd for men, even for women
    body = f"{region[:4]}04{birth:%Y%m%d}{odd_even:03d}"
    total = sum(int(c) * w for c, w in zip(body, ID_WEIGHTS, strict=True))
    return body + ID_CHECK[total % 11]


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


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def card_for(index: int, person: Person) -> Card:
    """The card of the person at `index` (0-based) in `Population.persons`.

    About a third are generation 2 (3DES), the rest generation 3 (SM4); every 97th
    card (from index 13) has expired and every 89th (from index 11) is revoked, so
    tests and simulators find such cards at fixed indexes."""
    serial = (index * SERIAL_MULTIPLIER + 0x1234567) % 2**32
    generation = 2 if index % 3 == 0 else 3
    if index % EXPIRED_EVERY == EXPIRED_AT:
        issue = dt.date(2014, 3, 1) + dt.timedelta(days=index % 365)
    elif generation == 2:
        issue = dt.date(2018, 1, 1) + dt.timedelta(days=index % 1000)
    else:
        issue = dt.date(2020, 1, 1) + dt.timedelta(days=index % 1800)
    # Ten years of validity; a card issued on 29 February expires on 1 March.
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
        status="revoked" if index % REVOKED_EVERY == REVOKED_AT else "active",
        pin=f"{(index * 7919 + 123457) % 1_000_000:06d}",
        pan=pan_body + luhn_digit(pan_body),
    )


@dataclass
class Population:
    seed: int
    institutions: list[Institution] = field(default_factory=list)
    catalog: list[CatalogEntry] = field(default_factory=list)
    persons: list[Person] = field(default_factory=list)

    def card(self, index: int) -> Card:
        """The card of `persons[index]` (cards are derived, not stored)."""
        return card_for(index, self.persons[index])


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


def _persons(rng: random.Random, n: int) -> list[Person]:
    out = []
    # ID numbers are unique: a sequence per (birth date, gender), at most 500 each.
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


def generate(
    seed: int, persons: int, *, hospitals: int = 20, pharmacies: int = 10, items: int = 300
) -> Population:
    rng = random.Random(seed)
    return Population(
        seed=seed,
        institutions=_institutions(rng, hospitals, pharmacies),
        catalog=_catalog(rng, items),
        persons=_persons(rng, persons),
    )


async def load(conn: asyncpg.Connection, pop: Population, *, timeout_s: float = 600.0) -> None:
    """Write the population in one transaction (COPY for the bulk tables)."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "institutions",
            records=[
                (i.fixmedins_code, i.fixmedins_name, i.admdvs, i.level, i.inst_type)
                for i in pop.institutions
            ],
            columns=["fixmedins_code", "fixmedins_name", "admdvs", "level", "inst_type"],
            timeout=timeout_s,
        )
        await conn.copy_records_to_table(
            "terminals",
            records=[(i.terminal_id, i.fixmedins_code) for i in pop.institutions],
            columns=["terminal_id", "fixmedins_code"],
            timeout=timeout_s,
        )
        await conn.copy_records_to_table(
            "operators",
            records=[
                (i.fixmedins_code, i.opter, f"收费员{i.opter[-3:]}") for i in pop.institutions
            ],
            columns=["fixmedins_code", "opter", "opter_name"],
            timeout=timeout_s,
        )
        await conn.copy_records_to_table(
            "catalog_items",
            records=[
                (
                    c.med_list_codg,
                    c.name,
                    c.chrgitm_lv,
                    c.list_type,
                    c.price_ceiling_fen_per_unit,
                    c.selfpay_prop_bp,
                )
                for c in pop.catalog
            ],
            columns=[
                "med_list_codg",
                "name",
                "chrgitm_lv",
                "list_type",
                "price_ceiling_fen_per_unit",
                "selfpay_prop_bp",
            ],
            timeout=timeout_s,
        )
        await conn.copy_records_to_table(
            "persons",
            records=[
                (
                    p.psn_no,
                    p.insuplc_admdvs,
                    p.certno,
                    p.psn_name,
                    p.gend,
                    p.brdy,
                    p.insutype,
                    p.retired,
                    p.psn_insu_date,
                    p.emp_name,
                    p.acct_balance_fen,
                )
                for p in pop.persons
            ],
            columns=[
                "psn_no",
                "insuplc_admdvs",
                "certno",
                "psn_name",
                "gend",
                "brdy",
                "insutype",
                "retired",
                "psn_insu_date",
                "emp_name",
                "acct_balance_fen",
            ],
            timeout=timeout_s,
        )
        # The issuer's record of every card (engine migration 0006), derived per index.
        await conn.copy_records_to_table(
            "cards",
            records=[
                (
                    c.card_sn,
                    c.card_no,
                    c.psn_no,
                    p.insuplc_admdvs,
                    c.generation,
                    c.status,
                    c.issue_date,
                    c.expiry_date,
                )
                for p, c in ((p, card_for(i, p)) for i, p in enumerate(pop.persons))
            ],
            columns=[
                "card_sn",
                "card_no",
                "psn_no",
                "insuplc_admdvs",
                "generation",
                "status",
                "issue_date",
                "expiry_date",
            ],
            timeout=timeout_s,
        )
        await _open_accounts(conn, pop, timeout_s)


async def _open_accounts(conn: asyncpg.Connection, pop: Population, timeout_s: float) -> None:
    """Fund the personal accounts from contributions with balanced opening entries of
    at most OPENING_ENTRY_ACCOUNTS accounts each (the database checks every entry's
    balance per posting at commit, so one giant entry would cost quadratic time)."""
    groups: dict[tuple[str, str], list[Person]] = {}
    for p in pop.persons:
        if p.acct_balance_fen > 0:
            groups.setdefault((p.insuplc_admdvs, p.insutype), []).append(p)
    records: list[tuple[int, str, int]] = []
    for (region, insutype), people in sorted(groups.items()):
        for start in range(0, len(people), OPENING_ENTRY_ACCOUNTS):
            chunk = people[start : start + OPENING_ENTRY_ACCOUNTS]
            entry_id = await conn.fetchval(
                "INSERT INTO journal_entries (kind, insuplc_admdvs) VALUES ('opening', $1)"
                " RETURNING entry_id",
                region,
                timeout=timeout_s,
            )
            postings = [
                ledger.Posting(
                    ledger.contributions_account(region, insutype),
                    sum(p.acct_balance_fen for p in chunk),
                )
            ]
            postings += [
                ledger.Posting(ledger.personal_account(p.psn_no), -p.acct_balance_fen)
                for p in chunk
            ]
            records += [(entry_id, x.account, x.amount_fen) for x in ledger.balanced(postings)]
    await conn.copy_records_to_table(
        "postings",
        records=records,
        columns=["entry_id", "account", "amount_fen"],
        timeout=timeout_s,
    )
