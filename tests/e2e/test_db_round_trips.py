"""Database round trips per transaction code (`yikatong_tx_db_round_trips`), checked
against the wire.

The engine runs behind a proxy (tests.pg_wire) that counts the turns of every
conversation with PostgreSQL. Requests are sent one at a time, so the turns seen
while one request is in flight are that request's. The histogram must count each
request once under its infno, and its sum per infno must equal the turns on the wire:
the engine's own count is the truth as PostgreSQL sees it, whatever the next
refactor does to the numbers themselves. The exact counts are left to that refactor;
what is pinned is the invariants (at least one round trip for a code that reads, at
least BEGIN + one statement + COMMIT or ROLLBACK for a state-changing one) and one
known case: a request refused at the signature check, from a terminal already in the
engine's cache, costs no round trip at all.

The engine's background jobs (ledger sealing, card-challenge purge) run once at start
and then only hourly here, so that no turn of theirs falls inside a request.
"""

from __future__ import annotations

import decimal
import time
from collections import Counter
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.txn.routes import build_routes
from simulators.population import Person
from terminals import signing
from terminals.client import PATH, BusinessError, Client, OutcomeUnknown
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from tests.e2e.conftest import Deployment
from tests.e2e.helpers import fee_line, registration, visit_info
from tests.pg_wire import RoundTripProxy
from tests.support import http_get

pytestmark = pytest.mark.slow

METRIC = "yikatong_tx_db_round_trips"
MUTATING = {infno for infno, spec in build_routes().items() if spec.mutating}
T = TypeVar("T")


class Histogram:
    """One scrape of the round-trip histogram: per infno the count, the sum and the
    number of requests that made no round trip (bucket le="0")."""

    def __init__(self, url: str) -> None:
        status, _, body = http_get(url + "/metrics")
        assert status == 200
        self.count: Counter[str] = Counter()
        self.sum: Counter[str] = Counter()
        self.zero: Counter[str] = Counter()
        for family in text_string_to_metric_families(body.decode()):
            if family.name != METRIC:
                continue
            for s in family.samples:
                infno = s.labels["infno"]
                if s.name == METRIC + "_count":
                    self.count[infno] = int(s.value)
                elif s.name == METRIC + "_sum":
                    self.sum[infno] = int(s.value)
                elif s.name == METRIC + "_bucket" and s.labels["le"] == "0.0":
                    self.zero[infno] = int(s.value)

    def __sub__(self, before: Histogram) -> Histogram:
        delta = object.__new__(Histogram)
        delta.count = self.count - before.count
        delta.sum = self.sum - before.sum
        delta.zero = self.zero - before.zero
        return delta


class Wire:
    """Sends requests one at a time and books the proxy's turns to each one's infno."""

    def __init__(self, proxy: RoundTripProxy) -> None:
        self.proxy = proxy
        self.requests: Counter[str] = Counter()
        self.turns: Counter[str] = Counter()
        self.each: dict[str, list[int]] = {}  # the turns of every request, by infno

    async def __call__(self, infno: str, request: Awaitable[T]) -> T:
        before = self.proxy.turns
        try:
            return await request
        finally:
            turns = self.proxy.turns - before
            self.requests[infno] += 1
            self.turns[infno] += turns
            self.each.setdefault(infno, []).append(turns)


def settlement(person: Person, mdtrt_id: str, medfee_sumamt: str) -> settle_msg.Data:
    return settle_msg.Data(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        med_type="11",
        medfee_sumamt=decimal.Decimal(medfee_sumamt),
        mdtrt_id=mdtrt_id,
        insutype=person.insutype,
        acct_used_flag="1",
    )


async def outpatient_visit(c: Client, d: Deployment, wire: Wire, n: int) -> None:
    """1101 → 2201 → 2203 → 2204 → 2206 → 2207 → 2208 → 2205 → 2202 for a new person,
    and a repeat of the 2207 after its cancellation (a refusal: rolled back)."""
    person = d.person()
    info = await wire("1101", c.person_info_by_id_number(person.certno))
    region = info.insuinfo[0].insuplc_admdvs
    ipt_otp_no = f"RT{n:08d}"
    reg = await wire("2201", c.register(region, registration(person, ipt_otp_no)))
    mdtrt_id = reg.data.mdtrt_id
    await wire("2203", c.visit_info(region, *visit_info(mdtrt_id, person.psn_no)))
    items = [("TJIA0001", "100.00", "2"), ("TYI10001", "100.00", "1"), ("TBING001", "50.00", "1")]
    lines = [fee_line(i + 1, mdtrt_id, person.psn_no, *item) for i, item in enumerate(items)]
    await wire("2204", c.upload_fees(region, lines))
    data = settlement(person, mdtrt_id, "350.00")
    await wire("2206", c.pre_settle(region, data))
    out = await wire("2207", c.settle(region, data))
    setl_id = out.setlinfo.setl_id or ""
    cancel = cancel_msg.Data(setl_id=setl_id, mdtrt_id=mdtrt_id, psn_no=person.psn_no)
    await wire("2208", c.cancel_settlement(region, cancel))
    every = fees_cancel_msg.Data(
        mdtrt_id=mdtrt_id, chrg_bchno=fees_cancel_msg.ALL_BATCHES, psn_no=person.psn_no
    )
    await wire("2205", c.cancel_fees(region, every))
    with pytest.raises(BusinessError):  # nothing left to settle
        await wire("2207", c.settle(region, data))
    unreg = unregister_msg.Data(psn_no=person.psn_no, mdtrt_id=mdtrt_id, ipt_otp_no=ipt_otp_no)
    await wire("2202", c.cancel_registration(region, unreg))


async def reversed_settlement(c: Client, d: Deployment, wire: Wire, n: int) -> None:
    """2207 whose answer the HIS "lost", undone by 2601."""
    person = d.person()
    info = await wire("1101", c.person_info_by_id_number(person.certno))
    region = info.insuinfo[0].insuplc_admdvs
    reg = await wire("2201", c.register(region, registration(person, f"RTREVERSE{n}")))
    mdtrt_id = reg.data.mdtrt_id
    line = fee_line(1, mdtrt_id, person.psn_no, "TJIA0001", "100.00")
    await wire("2204", c.upload_fees(region, [line]))
    data = settlement(person, mdtrt_id, "100.00")
    msgid = await c.msgids.next()
    body = c.envelope(msgid, settle_msg.Input(data=data), region)
    status, _ = await wire("2207", c.post(body))
    assert status == 200
    out = await wire("2601", c.reverse(OutcomeUnknown("2207", msgid, body, TimeoutError())))
    assert out.data.rslt == "reversed"


async def pharmacy_purchase(d: Deployment, wire: Wire) -> None:
    """2101 → 2102 → 2103 for a new person at a pharmacy: the basket in the request."""
    shop = d.pharmacy()
    person = d.person()
    line = pharmacy_presettle_msg.DrugDetail(
        feedetl_sn="0001",
        fee_ocur_time="2026-11-29 09:30:00",
        med_list_codg="TJIA0001",
        medins_list_codg="LTJIA0001",
        det_item_fee_sumamt=decimal.Decimal("100.00"),
        cnt=decimal.Decimal(1),
        pric=decimal.Decimal("100.00"),
    )
    info = pharmacy_settle_msg.DrugInfo(
        psn_no=person.psn_no,
        mdtrt_cert_type="02",
        mdtrt_cert_no=person.certno,
        begntime="2026-11-29 09:30:00",
        medfee_sumamt=decimal.Decimal("100.00"),
        insutype=person.insutype,
    )
    region = person.insuplc_admdvs
    async with d.client(shop) as pos:
        await wire("9001", pos.sign_in())
        await wire("2101", pos.pharmacy_pre_settle(region, info, [line]))
        out = await wire("2102", pos.pharmacy_settle(region, info, [line]))
        setl_id, mdtrt_id = out.setlinfo.setl_id or "", out.setlinfo.mdtrt_id
        cancel = pharmacy_cancel_msg.Data(setl_id=setl_id, mdtrt_id=mdtrt_id, psn_no=person.psn_no)
        await wire("2103", pos.pharmacy_cancel(region, cancel))


async def test_round_trips_per_infno_match_the_wire_over_outpatient_flows(
    behind_proxy: tuple[Deployment, RoundTripProxy],
) -> None:
    d, proxy = behind_proxy
    wire = Wire(proxy)
    before = Histogram(d.engine.url)
    connections = proxy.connections
    async with d.client() as c:
        # Every code at least twice: the first on a connection prepares, later ones reuse.
        await wire("9001", c.sign_in())
        for n in range(3):
            await outpatient_visit(c, d, wire, n)
        for n in range(2):
            await reversed_settlement(c, d, wire, n)
        for _ in range(2):
            await pharmacy_purchase(d, wire)
        card = d.pop.card(0)
        for _ in range(2):
            await wire("9301", c.card_challenge(card.card_sn))
            await wire("9002", c.sign_out())
            await wire("9001", c.sign_in())
    delta = Histogram(d.engine.url) - before

    assert proxy.connections == connections, "a connection was opened while counting"
    assert dict(delta.count) == dict(wire.requests)
    for infno, requests in wire.requests.items():
        assert delta.sum[infno] == wire.turns[infno], (infno, delta.sum[infno], wire.turns)
        # BEGIN + a statement + COMMIT; 1101 by ID number (all of this test's) spends
        # nothing and is its load alone.
        least = 3 if infno in MUTATING and infno != "1101" else 1
        assert delta.sum[infno] >= least * requests, (infno, delta.sum[infno], requests)
        assert delta.zero[infno] == 0, infno
    # The budget (DESIGN.md §2): at most 3 round trips per request once the connection
    # has prepared its statements (a first use adds a prepare per statement).
    warm = {infno: min(turns) for infno, turns in wire.each.items()}
    assert max(warm.values()) <= 3, warm
    assert warm["1101"] == 1, warm
    # The pharmacy codes: 2101 is its load alone; 2102 and 2103 BEGIN, load, write + COMMIT.
    assert (warm["2101"], warm["2102"], warm["2103"]) == (1, 3, 3), warm


async def test_bad_signature_from_a_cached_terminal_costs_no_round_trip(
    behind_proxy: tuple[Deployment, RoundTripProxy],
) -> None:
    d, proxy = behind_proxy
    async with d.client() as c:
        await c.sign_in()  # the terminal is now in the engine's 30 s cache
    creds = d.credentials(d.hospital())
    body = b'{"infno":"1101"}'
    headers = signing.signed_headers(
        creds.terminal_id,
        creds.mac_key,
        "POST",
        PATH,
        body,
        now_s=int(time.time()),
        nonce=signing.new_nonce(),
    )
    headers[signing.HEADER_SIGNATURE] = "0" * 64
    before, turns = Histogram(d.engine.url), proxy.turns
    async with (
        aiohttp.ClientSession() as session,
        session.post(d.engine.url + PATH, data=body, headers=headers) as resp,
    ):
        assert resp.status == 401
    delta = Histogram(d.engine.url) - before

    assert proxy.turns == turns
    assert dict(delta.count) == {"unknown": 1}
    assert dict(delta.zero) == {"unknown": 1}
    assert delta.sum["unknown"] == 0
