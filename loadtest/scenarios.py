"""Load scenarios: what one arrival does.

An arrival is one *unit* of work: for the settlement scenarios one outpatient
settlement (the yardstick: 2201 register → 2204 fee details → 2207 settle, each
request durable on its own) or one pharmacy settlement (2102 with a 5-item basket: one
request, one durable settlement, DESIGN.md §8's target), for the others one lookup or
one registration. The first request of a unit is prepared and signed before its
intended send time; the later ones depend on earlier answers (`mdtrt_id`) and leave as
soon as those arrive, so their intended time is the previous answer's arrival.

A scenario is a class with `name`, `unit`, `first()` and `rest()`, the kind of
institution whose terminals send it (`inst_type`) and, where the unit has a fixed
size, its number of lines (`lines`); `SCENARIOS` is the table `--scenario` and `--mix`
choose from. Inpatient and cross-region scenarios plug in here as those transactions
land.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from loadtest.sender import LeanAnswer, LoadTerminal, Sender
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees as fees_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import presettle as presettle_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.messages.outpatient import visit as visit_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.wire import Request

CENT = decimal.Decimal("0.01")
PHARMACY_BASKET_LINES = 5  # DESIGN.md §8: the yardstick is 2102 with a 5-item basket
InstType = Literal["hospital", "pharmacy"]


class PersonRef(msgspec.Struct, frozen=True, array_like=True):
    """What a terminal knows of a patient after reading the ID card."""

    psn_no: str
    certno: str
    insutype: str
    insuplc_admdvs: str


class Item(msgspec.Struct, frozen=True, array_like=True):
    med_list_codg: str
    price_fen: int


@dataclass
class Plan:
    """One arrival, drawn from the run's seeded RNG before it is due."""

    terminal: LoadTerminal
    person: PersonRef
    items: list[tuple[Item, int]]  # (catalog item, count)
    acct_used: bool
    ipt_otp_no: str
    when: str  # begntime / fee time, platform local time


def plan(
    rng: random.Random,
    terminals: list[LoadTerminal],
    persons: list[PersonRef],
    catalog: list[Item],
    serial: str,
    items_max: int = 5,
    items_exact: int | None = None,
) -> Plan:
    """One arrival: 1..`items_max` lines, or exactly `items_exact` when given."""
    n = items_exact if items_exact is not None else rng.randint(1, items_max)
    return Plan(
        terminal=rng.choice(terminals),
        person=rng.choice(persons),
        items=[(rng.choice(catalog), rng.choice((1, 1, 2, 3))) for _ in range(n)],
        acct_used=rng.random() < 0.8,
        ipt_otp_no=f"LT{serial}",
        when=dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    )


class _RegOut(msgspec.Struct):
    mdtrt_id: str


class _Reg(msgspec.Struct):
    data: _RegOut


class _SetlInfo(msgspec.Struct):
    setl_id: str | None = None


class _Setl(msgspec.Struct):
    setlinfo: _SetlInfo


def _register_request(p: Plan) -> register_msg.Input:
    data = register_msg.Data(
        psn_no=p.person.psn_no,
        insutype=p.person.insutype,
        begntime=p.when,
        mdtrt_cert_type="02",
        mdtrt_cert_no=p.person.certno,
        ipt_otp_no=p.ipt_otp_no,
        dept_code="A03",
        dept_name="内科",
    )
    return register_msg.Input(data=data)


def _fees_request(p: Plan, mdtrt_id: str) -> tuple[fees_msg.Input, decimal.Decimal]:
    lines, total = [], decimal.Decimal(0)
    for n, (item, cnt) in enumerate(p.items):
        pric = (decimal.Decimal(item.price_fen) / 100).quantize(CENT)
        amount = (pric * cnt).quantize(CENT)
        total += amount
        lines.append(
            fees_msg.FeeDetail(
                feedetl_sn=f"{n + 1:04d}",
                mdtrt_id=mdtrt_id,
                psn_no=p.person.psn_no,
                chrg_bchno="B001",
                fee_ocur_time=p.when,
                med_list_codg=item.med_list_codg,
                medins_list_codg=f"L{item.med_list_codg}",
                det_item_fee_sumamt=amount,
                cnt=decimal.Decimal(cnt),
                pric=pric,
                bilg_dept_codg="A03",
                bilg_dept_name="内科",
            )
        )
    return fees_msg.Input(feedetail=lines), total


def _settle_data(p: Plan, mdtrt_id: str, total: decimal.Decimal) -> settle_msg.Data:
    """The 2207 data; 2206 takes the same (it has none of the 2207-only fields set)."""
    return settle_msg.Data(
        psn_no=p.person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=p.person.certno,
        med_type="11",
        medfee_sumamt=total,
        mdtrt_id=mdtrt_id,
        insutype=p.person.insutype,
        acct_used_flag="1" if p.acct_used else "0",
    )


class Scenario:
    name: ClassVar[str]
    unit: ClassVar[str]
    description: ClassVar[str]
    settles: ClassVar[bool] = False  # a completed unit is a durable settlement
    inst_type: ClassVar[InstType] = "hospital"  # whose terminals send it
    lines: ClassVar[int | None] = None  # fee lines per unit; None: 1..items_max

    def first(self, p: Plan) -> Request:
        """The first request (its infno is its type's)."""
        raise NotImplementedError

    async def rest(self, p: Plan, first: LeanAnswer, at: float, sender: Sender) -> bool:
        """The requests after the first; True when the unit completed."""
        return True


class PersonInfo(Scenario):
    name = "person-info"
    unit = "lookup"
    description = "1101 person info by ID number (read-only)"

    def first(self, p: Plan) -> Request:
        cert = p.person.certno
        data = person_info_msg.Data(
            mdtrt_cert_type="02", mdtrt_cert_no=cert, psn_cert_type="01", certno=cert
        )
        return person_info_msg.Input(data=data)


class Register(Scenario):
    name = "register"
    unit = "registration"
    description = "2201 outpatient registration"

    def first(self, p: Plan) -> Request:
        return _register_request(p)


class Outpatient(Scenario):
    name = "outpatient"
    unit = "settlement"
    description = "2201 → 2204 → 2207: one durable outpatient settlement (the yardstick)"
    settles = True

    def first(self, p: Plan) -> Request:
        return _register_request(p)

    async def rest(self, p: Plan, first: LeanAnswer, at: float, sender: Sender) -> bool:
        return await self._settle(p, first, sender) is not None

    async def _settle(self, p: Plan, reg: LeanAnswer, sender: Sender) -> tuple[str, str] | None:
        mdtrt_id = msgspec.json.decode(reg.output, type=_Reg).data.mdtrt_id
        region = p.person.insuplc_admdvs
        fees, total = _fees_request(p, mdtrt_id)
        ans, _ = await sender.call(p.terminal, fees, region)
        if ans is None:
            return None
        settle = settle_msg.Input(data=_settle_data(p, mdtrt_id, total))
        ans, _ = await sender.call(p.terminal, settle, region)
        if ans is None:
            return None
        setl_id = msgspec.json.decode(ans.output, type=_Setl).setlinfo.setl_id or ""
        return mdtrt_id, setl_id


class Visit(Outpatient):
    name = "visit"
    description = (
        "1101 → 2201 → 2203 → 2204 → 2206 → 2207: a whole outpatient visit as a HIS sends it"
    )

    def first(self, p: Plan) -> Request:
        return PersonInfo().first(p)

    async def rest(self, p: Plan, first: LeanAnswer, at: float, sender: Sender) -> bool:
        region = p.person.insuplc_admdvs
        reg, _ = await sender.call(p.terminal, _register_request(p), region)
        if reg is None:
            return False
        mdtrt_id = msgspec.json.decode(reg.output, type=_Reg).data.mdtrt_id
        info = visit_msg.Input(
            mdtrtinfo=visit_msg.MdtrtInfo(
                mdtrt_id=mdtrt_id, psn_no=p.person.psn_no, med_type="11", begntime=p.when
            ),
            diseinfo=[
                visit_msg.DiseInfo(
                    diag_type="1",
                    diag_srt_no=1,
                    diag_code="J06.900",
                    diag_name="急性上呼吸道感染",
                    diag_time=p.when,
                )
            ],
        )
        if (await sender.call(p.terminal, info, region))[0] is None:
            return False
        fees, total = _fees_request(p, mdtrt_id)
        if (await sender.call(p.terminal, fees, region))[0] is None:
            return False
        settle = _settle_data(p, mdtrt_id, total)
        if (await sender.call(p.terminal, presettle_msg.Input(data=settle), region))[0] is None:
            return False
        return (await sender.call(p.terminal, settle_msg.Input(data=settle), region))[0] is not None


class SettleAndCancel(Outpatient):
    name = "cancel"
    unit = "cancelled settlement"
    description = "2201 → 2204 → 2207, then 2208 → 2205 → 2202: a settlement undone"
    settles = False  # its money is handed back: not a settlement for the ratio

    async def rest(self, p: Plan, first: LeanAnswer, at: float, sender: Sender) -> bool:
        done = await self._settle(p, first, sender)
        if done is None:
            return False
        mdtrt_id, setl_id = done
        region, psn_no = p.person.insuplc_admdvs, p.person.psn_no
        steps: list[Request] = [
            cancel_msg.Input(
                data=cancel_msg.Data(setl_id=setl_id, mdtrt_id=mdtrt_id, psn_no=psn_no)
            ),
            fees_cancel_msg.Input(
                data=fees_cancel_msg.Data(
                    mdtrt_id=mdtrt_id, chrg_bchno=fees_cancel_msg.ALL_BATCHES, psn_no=psn_no
                )
            ),
            unregister_msg.Input(
                data=unregister_msg.Data(psn_no=psn_no, mdtrt_id=mdtrt_id, ipt_otp_no=p.ipt_otp_no)
            ),
        ]
        for request in steps:
            if (await sender.call(p.terminal, request, region))[0] is None:
                return False
        return True


def _drug_lines(p: Plan) -> tuple[list[pharmacy_presettle_msg.DrugDetail], decimal.Decimal]:
    lines, total = [], decimal.Decimal(0)
    for n, (item, cnt) in enumerate(p.items):
        pric = (decimal.Decimal(item.price_fen) / 100).quantize(CENT)
        amount = (pric * cnt).quantize(CENT)
        total += amount
        lines.append(
            pharmacy_presettle_msg.DrugDetail(
                feedetl_sn=f"{n + 1:04d}",
                fee_ocur_time=p.when,
                med_list_codg=item.med_list_codg,
                medins_list_codg=f"L{item.med_list_codg}",
                det_item_fee_sumamt=amount,
                cnt=decimal.Decimal(cnt),
                pric=pric,
            )
        )
    return lines, total


class Pharmacy(Scenario):
    name = "pharmacy"
    unit = "settlement"
    description = "2102 with a 5-item basket by ID number: one request, one durable settlement"
    settles = True
    inst_type = "pharmacy"
    lines = PHARMACY_BASKET_LINES

    def first(self, p: Plan) -> Request:
        lines, total = _drug_lines(p)
        info = pharmacy_settle_msg.DrugInfo(
            psn_no=p.person.psn_no,
            mdtrt_cert_type="02",
            mdtrt_cert_no=p.person.certno,
            begntime=p.when,
            medfee_sumamt=total,
            insutype=p.person.insutype,
            acct_used_flag="1" if p.acct_used else "0",
        )
        return pharmacy_settle_msg.Input(druginfo=info, drugdetail=lines)


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (Outpatient, Visit, PersonInfo, Register, SettleAndCancel, Pharmacy)
}


def parse_mix(text: str) -> list[tuple[str, int]]:
    """`outpatient=8,person-info=2` → [(name, weight)]; a bare name weighs 1."""
    out: list[tuple[str, int]] = []
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name not in SCENARIOS:
            known = ", ".join(sorted(SCENARIOS))
            raise ValueError(f"--mix: unknown scenario {name!r} (known: {known})")
        try:
            w = int(weight) if weight else 1
        except ValueError:
            raise ValueError(f"--mix: weight of {name!r} must be an integer") from None
        if w < 1:
            raise ValueError(f"--mix: weight of {name!r} must be at least 1")
        out.append((name, w))
    return out
