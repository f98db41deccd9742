"""Random interleavings of money transactions over HTTP (Hypothesis), through a real
engine and its database: rounds of outpatient settlements (2207, at home and in another
region), pharmacy purchases (2102), cancellations (2208, 2103) and reversals of lost
answers (2601) of settlements and of cancellations for a few persons, each round sent at once. Whatever the order the
engine serialises them in, no answer is anything but a settlement or a documented
refusal, no account goes below zero, no accumulator passes its limit, and `ledger
check` holds after every round (every entry balanced, clearing pairs netted out,
accumulators equal to the live settlements)."""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.population import NEIGHBOUR_REGION, Person
from terminals.client import BusinessError, Client, OutcomeUnknown, yuan
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.results import ResultCode
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import NOW, open_visit

pytestmark = pytest.mark.slow

OPS = ("visit", "visit_away", "buy", "cancel", "lost_and_reversed", "lost_cancel_reversed")
# Refusals a race between these may legitimately answer (nothing else may come back).
RACE_REFUSALS = {
    ResultCode.settlement_already_cancelled,
    ResultCode.visit_already_settled,
    ResultCode.msgid_reversed,
    ResultCode.reversal_cancellation_stands,
}


@dataclasses.dataclass
class Live:
    setl_id: str
    mdtrt_id: str
    person: Person
    pharmacy: bool
    client: Client


@dataclasses.dataclass
class World:
    d: Deployment
    persons: list[Person]
    his: Client
    away: Client  # a hospital in another region than the persons' own
    pos: Client
    live: list[Live] = dataclasses.field(default_factory=list)


def basket(price: str) -> list[pharmacy_presettle_msg.DrugDetail]:
    p = decimal.Decimal(price)
    return [
        pharmacy_presettle_msg.DrugDetail(
            feedetl_sn="0001",
            fee_ocur_time=NOW,
            med_list_codg="TJIA0001",
            medins_list_codg="LTJIA0001",
            det_item_fee_sumamt=yuan(p),
            cnt=decimal.Decimal(1),
            pric=p,
        )
    ]


def druginfo(person: Person, price: str) -> pharmacy_settle_msg.DrugInfo:
    return pharmacy_settle_msg.DrugInfo(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        begntime=NOW,
        medfee_sumamt=yuan(price),
        insutype=person.insutype,
    )


async def run_op(w: World, op: str, person: Person, price: str, rng: random.Random) -> None:
    region = person.insuplc_admdvs
    if op in ("visit", "visit_away"):
        c = w.his if op == "visit" else w.away
        visit = await open_visit(c, person, [("TJIA0001", price, "1")])
        out = await c.settle(region, visit.settle_data())
        w.live.append(Live(out.setlinfo.setl_id or "", visit.mdtrt_id, person, False, c))
    elif op == "buy":
        bought = await w.pos.pharmacy_settle(region, druginfo(person, price), basket(price))
        s = bought.setlinfo
        w.live.append(Live(s.setl_id or "", s.mdtrt_id, person, True, w.pos))
    elif op in ("cancel", "lost_cancel_reversed") and w.live:
        await cancel_one(rng.choice(w.live), lost=op == "lost_cancel_reversed")
    elif op == "lost_and_reversed":
        visit = await open_visit(w.his, person, [("TJIA0001", price, "1")])
        msgid = await w.his.msgids.next()
        body = w.his.envelope(msgid, settle_msg.Input(data=visit.settle_data()), region)
        status, _ = await w.his.post(body)  # the answer "lost"
        assert status == 200
        await w.his.reverse(OutcomeUnknown("2207", msgid, body, TimeoutError()))


async def cancel_one(target: Live, lost: bool) -> None:
    """2208 or 2103 of `target`; when `lost`, its answer is dropped and it is reversed."""
    c, r = target.client, target.person.insuplc_admdvs
    ids = {"setl_id": target.setl_id, "mdtrt_id": target.mdtrt_id, "psn_no": target.person.psn_no}
    if not lost:
        if target.pharmacy:
            await c.pharmacy_cancel(r, pharmacy_cancel_msg.Data(**ids))
        else:
            await c.cancel_settlement(r, cancel_msg.Data(**ids))
        return
    request = (
        pharmacy_cancel_msg.Input(data=pharmacy_cancel_msg.Data(**ids))
        if target.pharmacy
        else cancel_msg.Input(data=cancel_msg.Data(**ids))
    )
    msgid = await c.msgids.next()
    body = c.envelope(msgid, request, r)
    status, _ = await c.post(body)  # the answer "lost" (a refusal, if it lost a race)
    assert status == 200
    await c.reverse(
        OutcomeUnknown("2103" if target.pharmacy else "2208", msgid, body, TimeoutError())
    )


async def run_round(w: World, ops: list[tuple[str, int, str]], seed: int) -> None:
    rng = random.Random(seed)
    results = await asyncio.gather(
        *(run_op(w, op, w.persons[who], price, rng) for op, who, price in ops),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BusinessError):
            assert r.code in RACE_REFUSALS, (r.code, r.err_msg)
        elif isinstance(r, BaseException):
            raise r


async def check_books(d: Deployment, persons: list[Person]) -> None:
    report = await d.ledger()
    assert report.balanced, report.violations
    for p in persons:
        balance = await d.fetchval(
            "SELECT acct_balance_fen FROM persons WHERE psn_no = $1", p.psn_no
        )
        assert isinstance(balance, int) and balance >= 0


ops = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.integers(0, 2),
        st.sampled_from(["40.00", "300.00", "1200.00"]),
    ),
    min_size=1,
    max_size=6,
)


async def clients(d: Deployment) -> tuple[Client, Client, Client]:
    away = next(
        i for i in d.pop.institutions if i.admdvs == NEIGHBOUR_REGION and i.inst_type == "hospital"
    )
    his, other, pos = d.client(), d.client(away), d.client(d.pharmacy())
    for c in (his, other, pos):
        await c.__aenter__()
        await c.sign_in()
    return his, other, pos


@pytest.fixture(scope="module")
def trio(deployment: Deployment) -> list[Person]:
    """Three employees for every example: their year goes on from example to example,
    so the limits are tested against what the earlier examples paid too."""
    return [deployment.person(employee=True) for _ in range(3)]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rounds=st.lists(ops, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_random_interleavings_keep_the_books(
    deployment: Deployment, trio: list[Person], rounds: list[list[tuple[str, int, str]]], seed: int
) -> None:
    persons = trio

    async def example() -> None:
        his, away, pos = await clients(deployment)
        try:
            w = World(deployment, persons, his, away, pos)
            for n, r in enumerate(rounds):
                await run_round(w, r, seed + n)
                await check_books(deployment, persons)
            # Settling and buying are never refused here: every one settled.
            settling = sum(op in ("visit", "visit_away", "buy") for r in rounds for op, _, _ in r)
            assert len(w.live) == settling
        finally:
            for c in (his, away, pos):
                await c.close()

    asyncio.run(example())
