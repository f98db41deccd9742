"""A simulated hospital information system (HIS) driving realistic outpatient visits
through the client SDK, as an integrator's system would:

    1101 person info → 2201 register → 2203 visit info → 2204 fee details (甲/乙/丙 mix,
    some above their price ceiling) → 2206 pre-settle → 2207 settle, and for a share of
    visits 2208 cancel settlement → 2205 cancel details → 2202 cancel registration.

A share of patients show their social security card: a virtual card (personalised
with keys diversified from the issuer masters in the demo key file) sits in an
in-memory reader and the card agent (terminals.agent) runs the whole authenticated
flow — 9301 challenge, INTERNAL/EXTERNAL AUTHENTICATE, PIN for some, 1101 by card.
Another share shows the e-card QR (simulators.ecard signs it; 1101 by e-card).

Visits run concurrently (bounded) across the population's hospitals; every answer is
checked against the DOMAIN.md §2.8 identities, and the run returns counts, amounts
and per-transaction latencies for the demo report.
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
from terminals.agent.core import CardAgent
from terminals.checks import identity_failures
from terminals.client import Client, yuan
from terminals.messages import setl
from terminals.messages.card import person_info as person_info_msg
from terminals.messages.outpatient import cancel as cancel_msg
from terminals.messages.outpatient import fees as fees_msg
from terminals.messages.outpatient import fees_cancel as fees_cancel_msg
from terminals.messages.outpatient import register as register_msg
from terminals.messages.outpatient import settle as settle_msg
from terminals.messages.outpatient import unregister as unregister_msg
from terminals.messages.outpatient import visit as visit_msg

CENT = decimal.Decimal("0.01")
T = TypeVar("T")


@dataclass
class Stats:
    visits: int = 0
    settlements: int = 0
    cancellations: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fund_fen: int = 0
    account_fen: int = 0
    cash_fen: int = 0
    medfee_fen: int = 0
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    identity_failures: int = 0
    card_visits: int = 0
    ecard_visits: int = 0
    elapsed_s: float = 0.0

    def add_settled(self, info: setl.SetlInfo) -> None:
        self.medfee_fen += _fen(info.medfee_sumamt)
        self.fund_fen += _fen(info.fund_pay_sumamt)
        self.account_fen += _fen(info.acct_pay)
        self.cash_fen += _fen(info.psn_cash_pay)


def _fen(value: decimal.Decimal) -> int:
    return int((value * 100).to_integral_value())


def _card_proof_ref(answer: person_info_msg.Output) -> str:
    """The card proof of a 1101 by card or e-card (the engine always answers one)."""
    if answer.yk_card_proof is None:
        raise RuntimeError("the engine answered a 1101 by card or e-card without yk_card_proof")
    return answer.yk_card_proof.cred_ref


class Hospital:
    """One institution's HIS: a signed-in client and a visit counter."""

    def __init__(self, inst: Institution, client: Client) -> None:
        self.inst = inst
        self.client = client
        self.visit_no = 0


class HisSimulator:
    def __init__(
        self,
        base_url: str,
        pop: Population,
        *,
        seed: int,
        terminal_keys: Callable[[str], bytes],
        cancel_share: float = 0.1,
        masters: IssuerMasters | None = None,
        card_share: float = 0.3,
        ecard: EcardPlatform | None = None,
        ecard_share: float = 0.1,
    ) -> None:
        self.terminal_keys = terminal_keys
        self.base_url = base_url
        self.pop = pop
        self.rng = random.Random(seed)
        self.cancel_share = cancel_share
        self.stats = Stats()
        self.hospitals: list[Hospital] = []
        # Cards need the issuer's master keys to be personalised; without them every
        # visit identifies the patient by ID number.
        self.masters = masters
        self.card_share = card_share if masters is not None else 0.0
        self.ecard = ecard
        self.ecard_share = ecard_share if ecard is not None else 0.0
        # One thread for every in-memory card: card steps take microseconds, and one
        # thread keeps the simulator's footprint flat however many visits run at once.
        self._card_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cards")

    async def _timed(self, infno: str, coro: Awaitable[T]) -> T:
        return await timed(self.stats.latencies_s, infno, coro)

    async def start(self, session: aiohttp.ClientSession) -> None:
        clients = await signed_in_clients(
            self.pop,
            "hospital",
            self.terminal_keys,
            self.base_url,
            session,
            opter_name="收费员",
            latencies_s=self.stats.latencies_s,
        )
        self.hospitals.extend(Hospital(inst, client) for inst, client in clients)

    def _fee_lines(self, mdtrt_id: str, psn_no: str, when: str) -> list[fees_msg.FeeDetail]:
        lines = []
        for n in range(self.rng.randint(1, 8)):
            item = self.rng.choice(self.pop.catalog)
            cnt = decimal.Decimal(self.rng.choice((1, 1, 2, 3, 5)))
            # Sometimes the hospital charges more than the ceiling allows (overlmt).
            price_fen = item.typical_price_fen
            if item.price_ceiling_fen_per_unit is None and self.rng.random() < 0.1:
                price_fen += price_fen // 10
            pric = (decimal.Decimal(price_fen) / 100).quantize(CENT)
            lines.append(
                fees_msg.FeeDetail(
                    feedetl_sn=f"{n + 1:04d}",
                    mdtrt_id=mdtrt_id,
                    psn_no=psn_no,
                    chrg_bchno="B001",
                    fee_ocur_time=when,
                    med_list_codg=item.med_list_codg,
                    medins_list_codg=f"L{item.med_list_codg}",
                    det_item_fee_sumamt=(pric * cnt).quantize(CENT),
                    cnt=cnt,
                    pric=pric,
                    bilg_dept_codg="A03",
                    bilg_dept_name="内科",
                )
            )
        return lines

    def close(self) -> None:
        self._card_thread.shutdown(wait=False)

    async def _identify(
        self, h: Hospital, index: int, today: dt.date
    ) -> tuple[person_info_msg.Output, str, str, str]:
        """1101 the way the patient shows up: a share with the social security card
        through the card agent (challenge, card cryptogram, PIN), a share with the
        e-card QR token from the issuing platform, the rest by ID number.
        Returns the answer, the credential (mdtrt_cert_type, mdtrt_cert_no) and the
        card proof's cred_ref for 2201/2207 (empty by ID number)."""
        person = self.pop.persons[index]
        card = self.pop.card(index)
        if (
            self.masters is not None
            and card.usable_on(today)
            and self.rng.random() < self.card_share
        ):
            icc = build_card(card, person, self.masters)
            reader = MemoryReader(icc, name=f"{h.inst.terminal_id} reader")
            # A staffed HIS desk: the cashier sees the patient, so the PIN is the
            # patient's choice (half give it), not the agent's condition.
            agent = CardAgent(reader, h.client, card_executor=self._card_thread, require_pin=False)
            pin = card.pin if self.rng.random() < 0.5 else None
            got = await self._timed("card", agent.person_info(pin=pin))
            self.stats.card_visits += 1
            return got.person, "03", card.card_no, _card_proof_ref(got.person)
        if self.ecard is not None and self.rng.random() < self.ecard_share:
            token = await self.ecard.issue(person)  # the patient's phone shows the QR
            got_ecard = await self._timed(
                "1101-ecard", h.client.person_info_by_ecard(token.token_id, token.qr)
            )
            self.stats.ecard_visits += 1
            return got_ecard, "01", token.token_id, _card_proof_ref(got_ecard)
        info = await self._timed("1101", h.client.person_info_by_id_number(person.certno))
        return info, "02", person.certno, ""

    async def visit(self) -> None:
        h = self.rng.choice(self.hospitals)
        index = self.rng.randrange(len(self.pop.persons))
        c = h.client
        t = self._timed
        # By card or e-card, 2201 and 2207 carry the 1101's card proof (DESIGN.md §4).
        info, cert_type, cert_no, cred_ref = await self._identify(h, index, dt.date.today())
        insu = info.insuinfo[0]
        region, psn_no = insu.insuplc_admdvs, info.baseinfo.psn_no
        h.visit_no += 1
        ipt_otp_no = f"MZ{h.visit_no:08d}"  # taken now: other visits of h run meanwhile
        now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        reg = await t(
            "2201",
            c.register(
                region,
                register_msg.Data(
                    psn_no=psn_no,
                    insutype=insu.insutype,
                    begntime=now,
                    mdtrt_cert_type=cert_type,
                    mdtrt_cert_no=cert_no,
                    yk_cred_ref=cred_ref,
                    ipt_otp_no=ipt_otp_no,
                    dept_code="A03",
                    dept_name="内科",
                ),
            ),
        )
        mdtrt_id = reg.data.mdtrt_id
        await t(
            "2203",
            c.visit_info(
                region,
                visit_msg.MdtrtInfo(mdtrt_id=mdtrt_id, psn_no=psn_no, med_type="11", begntime=now),
                [
                    visit_msg.DiseInfo(
                        diag_type="1",
                        diag_srt_no=1,
                        diag_code="J06.900",
                        diag_name="急性上呼吸道感染",
                        diag_time=now,
                    )
                ],
            ),
        )
        lines = self._fee_lines(mdtrt_id, psn_no, now)
        await t("2204", c.upload_fees(region, lines))
        total = sum((x.det_item_fee_sumamt for x in lines), decimal.Decimal(0))
        settle_data = settle_msg.Data(
            psn_no=psn_no,
            mdtrt_cert_type=cert_type,
            mdtrt_cert_no=cert_no,
            yk_cred_ref=cred_ref,
            med_type="11",
            medfee_sumamt=yuan(total),
            mdtrt_id=mdtrt_id,
            insutype=insu.insutype,
            acct_used_flag="1" if self.rng.random() < 0.8 else "0",
        )
        await t("2206", c.pre_settle(region, settle_data))
        out = await t("2207", c.settle(region, settle_data))
        s = self.stats
        s.visits += 1
        s.settlements += 1
        if identity_failures(out.setlinfo):
            s.identity_failures += 1
        if self.rng.random() < self.cancel_share:
            undo = unregister_msg.Data(psn_no=psn_no, mdtrt_id=mdtrt_id, ipt_otp_no=ipt_otp_no)
            await self._undo(c, region, undo, out.setlinfo.setl_id or "")
            s.cancellations += 1
            return
        s.add_settled(out.setlinfo)

    async def _undo(self, c: Client, region: str, visit: unregister_msg.Data, setl_id: str) -> None:
        """2208 → 2205 → 2202: the settlement, every fee detail, then the visit."""
        mdtrt_id, psn_no = visit.mdtrt_id, visit.psn_no
        cancel = cancel_msg.Data(setl_id=setl_id, mdtrt_id=mdtrt_id, psn_no=psn_no)
        await self._timed("2208", c.cancel_settlement(region, cancel))
        every = fees_cancel_msg.Data(
            mdtrt_id=mdtrt_id, chrg_bchno=fees_cancel_msg.ALL_BATCHES, psn_no=psn_no
        )
        await self._timed("2205", c.cancel_fees(region, every))
        await self._timed("2202", c.cancel_registration(region, visit))

    async def run(
        self, visits: int, concurrency: int, progress: Callable[[int], None] | None = None
    ) -> Stats:
        started = time.perf_counter()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=concurrency * 2)
        done = 0

        async def worker() -> None:
            nonlocal done
            while True:
                item = await queue.get()
                try:
                    if item < 0:
                        return
                    try:
                        await self.visit()
                    except Exception as exc:  # a refused visit is counted, not fatal
                        self.stats.refused[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    done += 1
                    if progress is not None:
                        progress(done)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for i in range(visits):
            await queue.put(i)
        for _ in workers:
            await queue.put(-1)
        await asyncio.gather(*workers)
        self.stats.elapsed_s = time.perf_counter() - started
        return self.stats
