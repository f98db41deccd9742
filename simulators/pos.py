"""A simulated pharmacy point of sale (POS) selling baskets through the client SDK, as
a pharmacy's till would:

    1101 person info → 2101 pre-settle the basket → 2102 settle it (one request, one
    durable settlement), and for a share of sales 2103 cancel; a 2102 or 2103 whose
    answer was lost is undone with 2601 (client.reverse), never sent again under a new
    msgid.

A basket holds 1-6 lines of the population's catalog, sold at the population's
pharmacies (institutions of inst_type "pharmacy"). The patient shows the social
security card (a virtual card in an in-memory reader, read by the card agent: 9301,
card cryptogram, PIN for some, 1101 by card), the e-card QR (simulators.ecard) or the
ID number. By card or e-card the 2102 carries the 1101's card proof (`yk_cred_ref`,
DESIGN.md §4) with mdtrt_cert_type 03 / 01 and the card number / token id.

`lost_answer_share` injects lost messages the way a flaky network loses them, half on
the way to the engine (the 2102 or 2103 never arrives: the reversal leaves a tombstone)
and half on the way back (it committed: the reversal cancels the purchase, or puts the
cancelled one back), so that the reversal paths run in every demo. Every answer is checked against the DOMAIN.md §2.8 identities; the run
returns counts, the kept amounts by flow and fund (and of them the cross-region ones:
patients insured outside the pharmacy's region), and per-transaction latencies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import decimal
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

from card.memory import MemoryReader
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.desks import signed_in_clients, timed
from simulators.ecard import EcardPlatform
from simulators.population import Institution, Population
from terminals import wire
from terminals.agent.core import CardAgent
from terminals.checks import identity_failures
from terminals.client import BusinessError, Client, OutcomeUnknown, ServiceUnavailable, yuan
from terminals.messages import setl
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.pharmacy import cancel as pharmacy_cancel_msg
from terminals.messages.pharmacy import presettle as pharmacy_presettle_msg
from terminals.messages.pharmacy import settle as pharmacy_settle_msg
from terminals.results import ResultCode

CENT = decimal.Decimal("0.01")
BASKET_LINES_MIN, BASKET_LINES_MAX = 1, 6
LINE_COUNTS = (1, 1, 1, 2, 2, 3, 5)  # boxes of one item
ACCOUNT_USED_SHARE = 0.8  # patients who let the personal account pay
PIN_SHARE = 0.5  # card patients who type their PIN at the till
REVERSE_ATTEMPTS = 3  # a 2601 that is itself lost is sent again, this often in all
REVERSE_RETRY_S = 0.2
LOST_ON_THE_WAY_SHARE = 0.5  # of the lost 2102s: never arrived (the rest: answer lost)
PHARMACY_CLR_TYPE = "41"  # the answer's clearing type of a pharmacy purchase
T = TypeVar("T")


def flow_of(info: setl.SetlInfo) -> str:
    """The flow a settlement answer belongs to, by its clearing type."""
    return "pharmacy" if info.clr_type == PHARMACY_CLR_TYPE else "outpatient"


def fen(value: decimal.Decimal) -> int:
    return int((value * 100).to_integral_value())


@dataclass
class Money:
    """Kept settlements of one flow and what each fund paid, in fen."""

    settlements: int = 0
    medfee_fen: int = 0
    fund_fen: int = 0  # fund_pay_sumamt: the pooled fund (and any other fund)
    account_fen: int = 0
    cash_fen: int = 0

    def add(self, info: setl.SetlInfo) -> None:
        self.settlements += 1
        self.medfee_fen += fen(info.medfee_sumamt)
        self.fund_fen += fen(info.fund_pay_sumamt)
        self.account_fen += fen(info.acct_pay)
        self.cash_fen += fen(info.psn_cash_pay)

    def merge(self, other: Money) -> None:
        self.settlements += other.settlements
        self.medfee_fen += other.medfee_fen
        self.fund_fen += other.fund_fen
        self.account_fen += other.account_fen
        self.cash_fen += other.cash_fen


@dataclass
class PosStats:
    purchases: int = 0  # sales run to their end (settled, cancelled or reversed)
    settlements: int = 0  # 2102 answered with a settlement
    cancellations: int = 0  # 2103
    lines: int = 0  # basket lines settled
    lost_answers: int = 0  # 2102 whose outcome was unknown, then reversed
    reversals: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # by rslt
    lost_cancels: int = 0  # 2103 whose outcome was unknown, then reversed
    # By rslt, or reversal_cancellation_stands (then the sale counts as cancelled).
    cancel_reversals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_flow: dict[str, Money] = field(default_factory=lambda: defaultdict(Money))
    # Of the kept: the insured region is not the pharmacy's (cross-region direct settlement).
    cross_region: Money = field(default_factory=Money)
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    identity_failures: int = 0
    card_purchases: int = 0
    ecard_purchases: int = 0
    id_number_purchases: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Patient:
    """The 1101 answer and the credential the 2102 names."""

    person: person_info_msg.Output
    cert_type: str  # mdtrt_cert_type: 03 card, 01 e-card, 02 ID number
    cert_no: str  # card number, e-card token id or ID number
    cred_ref: str  # the card proof of a 1101 by card or e-card; "" by ID number


def _card_proof_ref(answer: person_info_msg.Output) -> str:
    if answer.yk_card_proof is None:
        raise RuntimeError("the engine answered a 1101 by card or e-card without yk_card_proof")
    return answer.yk_card_proof.cred_ref


@dataclass(frozen=True)
class Till:
    """One pharmacy's POS: a signed-in client."""

    inst: Institution
    client: Client


class PosSimulator:
    def __init__(
        self,
        base_url: str,
        pop: Population,
        *,
        seed: int,
        terminal_keys: Callable[[str], bytes],
        masters: IssuerMasters | None = None,
        card_share: float = 0.3,
        ecard: EcardPlatform | None = None,
        ecard_share: float = 0.15,
        cancel_share: float = 0.05,
        lost_answer_share: float = 0.0,
        lost_cancel_share: float | None = None,  # of the 2103s; lost_answer_share if None
    ) -> None:
        self.base_url = base_url
        self.pop = pop
        self.rng = random.Random(seed)
        self.terminal_keys = terminal_keys
        # Cards need the issuer's master keys; without them nobody pays by card.
        self.masters = masters
        self.card_share = card_share if masters is not None else 0.0
        self.ecard = ecard
        self.ecard_share = ecard_share if ecard is not None else 0.0
        self.cancel_share = cancel_share
        self.lost_answer_share = lost_answer_share
        self.lost_cancel_share = (
            lost_answer_share if lost_cancel_share is None else lost_cancel_share
        )
        self.stats = PosStats()
        self.tills: list[Till] = []
        # One thread for every in-memory card, as in the HIS simulator.
        self._card_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pos-cards")

    async def _timed(self, infno: str, coro: Awaitable[T]) -> T:
        return await timed(self.stats.latencies_s, infno, coro)

    async def start(self, session: aiohttp.ClientSession) -> None:
        clients = await signed_in_clients(
            self.pop,
            "pharmacy",
            self.terminal_keys,
            self.base_url,
            session,
            opter_name="药师",
            latencies_s=self.stats.latencies_s,
        )
        self.tills.extend(Till(inst, client) for inst, client in clients)
        if not self.tills:
            raise RuntimeError("the population has no pharmacy")

    def close(self) -> None:
        self._card_thread.shutdown(wait=False)

    async def _identify(self, till: Till, index: int, today: dt.date) -> Patient:
        """1101 the way the patient shows up: the card through the card agent, the
        e-card QR from the issuing platform, or the ID number."""
        person = self.pop.persons[index]
        card = self.pop.card(index)
        s = self.stats
        if (
            self.masters is not None
            and card.usable_on(today)
            and self.rng.random() < self.card_share
        ):
            reader = MemoryReader(
                build_card(card, person, self.masters), name=till.inst.terminal_id
            )
            agent = CardAgent(
                reader, till.client, card_executor=self._card_thread, require_pin=False
            )
            pin = card.pin if self.rng.random() < PIN_SHARE else None
            got = await self._timed("card", agent.person_info(pin=pin))
            s.card_purchases += 1
            return Patient(got.person, "03", card.card_no, _card_proof_ref(got.person))
        if self.ecard is not None and self.rng.random() < self.ecard_share:
            token = await self.ecard.issue(person)  # the patient's phone shows the QR
            answer = await self._timed(
                "1101-ecard", till.client.person_info_by_ecard(token.token_id, token.qr)
            )
            s.ecard_purchases += 1
            return Patient(answer, "01", token.token_id, _card_proof_ref(answer))
        answer = await self._timed("1101", till.client.person_info_by_id_number(person.certno))
        s.id_number_purchases += 1
        return Patient(answer, "02", person.certno, "")

    def _basket(self, when: str) -> list[pharmacy_presettle_msg.DrugDetail]:
        lines = []
        for n in range(self.rng.randint(BASKET_LINES_MIN, BASKET_LINES_MAX)):
            item = self.rng.choice(self.pop.catalog)
            cnt = decimal.Decimal(self.rng.choice(LINE_COUNTS))
            pric = (decimal.Decimal(item.typical_price_fen) / 100).quantize(CENT)
            lines.append(
                pharmacy_presettle_msg.DrugDetail(
                    feedetl_sn=f"{n + 1:04d}",
                    fee_ocur_time=when,
                    med_list_codg=item.med_list_codg,
                    medins_list_codg=f"L{item.med_list_codg}",
                    det_item_fee_sumamt=(pric * cnt).quantize(CENT),
                    cnt=cnt,
                    pric=pric,
                )
            )
        return lines

    def _check(self, info: setl.SetlInfo) -> None:
        if identity_failures(info):
            self.stats.identity_failures += 1

    async def purchase(self) -> None:
        till = self.rng.choice(self.tills)
        index = self.rng.randrange(len(self.pop.persons))
        c, s = till.client, self.stats
        who = await self._identify(till, index, dt.date.today())
        insu = who.person.insuinfo[0]
        region, psn_no = insu.insuplc_admdvs, who.person.baseinfo.psn_no
        now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        lines = self._basket(now)
        info = pharmacy_settle_msg.DrugInfo(
            psn_no=psn_no,
            mdtrt_cert_type=who.cert_type,
            mdtrt_cert_no=who.cert_no,
            yk_cred_ref=who.cred_ref,
            begntime=now,
            medfee_sumamt=yuan(sum((x.det_item_fee_sumamt for x in lines), decimal.Decimal(0))),
            insutype=insu.insutype,
            acct_used_flag="1" if self.rng.random() < ACCOUNT_USED_SHARE else "0",
        )
        trial = await self._timed("2101", c.pharmacy_pre_settle(region, info, lines))
        self._check(trial.setlinfo)
        out = await self._settle(
            c, region, pharmacy_settle_msg.Input(druginfo=info, drugdetail=lines)
        )
        s.purchases += 1
        if out is None:  # lost, then reversed
            return
        s.settlements += 1
        s.lines += len(lines)
        self._check(out.setlinfo)
        if self.rng.random() < self.cancel_share:
            data = pharmacy_cancel_msg.Data(
                setl_id=out.setlinfo.setl_id or "", mdtrt_id=out.setlinfo.mdtrt_id, psn_no=psn_no
            )
            if await self._cancel(c, region, data):
                s.cancellations += 1
                return
        s.by_flow[flow_of(out.setlinfo)].add(out.setlinfo)
        if region != till.inst.admdvs:
            s.cross_region.add(out.setlinfo)

    async def _cancel(self, c: Client, region: str, data: pharmacy_cancel_msg.Data) -> bool:
        """2103; False when its answer was lost and the 2601 kept the sale instead (the
        settlement put back, or the 2103 tombstoned before it arrived)."""
        if self.rng.random() >= self.lost_cancel_share:
            self._check((await self._timed("2103", c.pharmacy_cancel(region, data))).setlinfo)
            return True
        unknown = await self._lose(c, region, pharmacy_cancel_msg.Input(data=data))
        self.stats.lost_cancels += 1
        try:
            rslt = await self._reverse(c, unknown)
        except BusinessError as exc:
            if exc.code is not ResultCode.reversal_cancellation_stands:
                raise
            rslt = exc.code.name  # something moved on since: the cancellation stands
        self.stats.cancel_reversals[rslt] += 1
        return rslt == ResultCode.reversal_cancellation_stands.name

    async def _settle(
        self, c: Client, region: str, request: pharmacy_settle_msg.Input
    ) -> pharmacy_settle_msg.Output | None:
        """2102; None when its answer was lost and the sale was reversed instead."""
        if self.rng.random() < self.lost_answer_share:
            unknown = await self._lose(c, region, request)
        else:
            try:
                return await self._timed(
                    "2102", c.pharmacy_settle(region, request.druginfo, request.drugdetail)
                )
            except OutcomeUnknown as exc:  # a real timeout or a dropped connection
                unknown = exc
        self.stats.lost_answers += 1
        self.stats.reversals[await self._reverse(c, unknown)] += 1
        return None

    async def _lose(
        self, c: Client, region: str, request: pharmacy_settle_msg.Input | pharmacy_cancel_msg.Input
    ) -> OutcomeUnknown:
        """Fault injection: the 2102 or 2103 is lost on its way (never sent) or its
        answer on the way back (sent and answered; the answer dropped here)."""
        infno = wire.infno_of(request)
        msgid = await c.msgids.next()
        body = c.envelope(msgid, request, region)
        if self.rng.random() < LOST_ON_THE_WAY_SHARE:
            cause = TimeoutError(f"the simulated network dropped the {infno}")
        else:
            await self._timed(infno, c.post(body))
            cause = TimeoutError(f"the simulated network dropped the {infno}'s answer")
        return OutcomeUnknown(infno, msgid, body, cause)

    async def _reverse(self, c: Client, unknown: OutcomeUnknown) -> str:
        """2601 until it is answered (a reversal is safe to send again, DOMAIN.md
        §2.9); its `rslt`."""
        for _ in range(REVERSE_ATTEMPTS - 1):
            try:
                return (await self._timed("2601", c.reverse(unknown))).data.rslt
            except (OutcomeUnknown, ServiceUnavailable):
                await asyncio.sleep(REVERSE_RETRY_S)
        return (await self._timed("2601", c.reverse(unknown))).data.rslt

    async def run(
        self, purchases: int, concurrency: int, progress: Callable[[int], None] | None = None
    ) -> PosStats:
        """`purchases` sales by `concurrency` tills at a time (bounded: that many tasks)."""
        started = time.perf_counter()
        taken = done = 0

        async def till_worker() -> None:
            nonlocal taken, done
            while taken < purchases:
                taken += 1
                try:
                    await self.purchase()
                except Exception as exc:  # a refused sale is counted, not fatal
                    self.stats.refused[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                done += 1
                if progress is not None:
                    progress(done)

        await asyncio.gather(*(till_worker() for _ in range(max(1, concurrency))))
        self.stats.elapsed_s = time.perf_counter() - started
        return self.stats
