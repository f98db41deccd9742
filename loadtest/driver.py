"""One generator process: signs its terminals in, then drives arrivals open-loop (at a
target rate, whether or not earlier requests have answered) or closed-loop (N
concurrent users, each starting its next unit when the last one ended), and hands back
its recorder.

Open loop, in detail: arrival times are drawn ahead (Poisson or evenly spaced); for each
arrival the unit is planned and its first request encoded and signed *before* the
generator sleeps until the arrival's time; then it is sent and the unit runs as its own
task. Latency counts from the intended time, so a late generator or a stalled engine
shows in the figures instead of hiding in them. In-flight units are bounded
(`max_in_flight`): an arrival beyond it is recorded as `generator_overflow`, never
silently delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Literal

import aiohttp
import msgspec

from engine.invariant import invariant
from loadtest.recorder import Recorder
from loadtest.scenarios import SCENARIOS, Item, PersonRef, Plan, Scenario, plan
from loadtest.sender import LoadTerminal, Prepared, Sender, make_terminal
from terminals.client import Credentials
from terminals.msgid import MsgIdFactory

SIGN_IN_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 2.0
SLEEP_MIN_S = 0.0005  # below this an arrival is sent without sleeping first


class TerminalSpec(msgspec.Struct, frozen=True, array_like=True):
    terminal_id: str
    mac_key_hex: str
    fixmedins_code: str
    fixmedins_name: str
    admdvs: str
    opter: str


class WorkerSpec(msgspec.Struct, frozen=True):
    """Everything one generator process needs; it travels to worker processes as
    msgpack bytes. `terminals` are hospital terminals, `pharmacies` pharmacy ones
    (each scenario is sent by the kind its `inst_type` names)."""

    url: str
    worker: int
    run_token: str
    mode: Literal["open", "closed"]
    mix: list[tuple[str, int]]
    rate_per_s: float  # this worker's share (open loop)
    concurrency: int  # this worker's share (closed loop)
    duration_s: float
    t0: float  # time.monotonic() at which the measured run starts (shared clock)
    seed: int
    arrivals: Literal["poisson", "uniform"]
    terminals: list[TerminalSpec]
    persons: list[PersonRef]
    catalog: list[Item]
    timeout_s: float
    max_in_flight: int
    connections: int
    items_max: int = 5
    pharmacies: list[TerminalSpec] = []


Progress = Callable[[Recorder], None]


def _terminal(t: TerminalSpec, http: aiohttp.ClientSession, url: str) -> LoadTerminal:
    credentials = Credentials(
        terminal_id=t.terminal_id,
        mac_key=bytes.fromhex(t.mac_key_hex),
        fixmedins_code=t.fixmedins_code,
        fixmedins_name=t.fixmedins_name,
        mdtrtarea_admvs=t.admdvs,
        opter=t.opter,
        opter_name="收费员",
    )
    return make_terminal(credentials, http, url, MsgIdFactory.for_institution(t.fixmedins_code))


class Driver:
    def __init__(self, spec: WorkerSpec, http: aiohttp.ClientSession, recorder: Recorder) -> None:
        self.spec = spec
        self.rng = random.Random(f"{spec.seed}/{spec.worker}")
        self.recorder = recorder
        self.sender = Sender(http, spec.url, recorder, spec.timeout_s)
        names = [name for name, _ in spec.mix]
        self.scenarios: list[Scenario] = [SCENARIOS[n]() for n in names]
        self.weights = [w for _, w in spec.mix]
        # Only the kinds of terminal the mix sends from are signed in.
        of_kind = {"hospital": spec.terminals, "pharmacy": spec.pharmacies}
        self.by_kind: dict[str, list[LoadTerminal]] = {}
        for kind in sorted({s.inst_type for s in self.scenarios}):
            invariant(bool(of_kind[kind]), f"the mix sends from {kind} terminals; none given")
            self.by_kind[kind] = [_terminal(t, http, spec.url) for t in of_kind[kind]]
        self.terminals = [t for kind in self.by_kind.values() for t in kind]
        self._serial = 0

    async def sign_in(self) -> None:
        async with asyncio.timeout(SIGN_IN_TIMEOUT_S):
            await asyncio.gather(*(t.client.sign_in() for t in self.terminals))

    def _plan(self) -> tuple[Scenario, Plan]:
        self._serial += 1
        scenario = self.rng.choices(self.scenarios, self.weights)[0]
        serial = f"{self.spec.run_token}{self.spec.worker:02d}{self._serial:08d}"
        p = plan(
            self.rng,
            self.by_kind[scenario.inst_type],
            self.spec.persons,
            self.spec.catalog,
            serial,
            self.spec.items_max,
            scenario.lines,
        )
        return scenario, p

    async def _unit(self, scenario: Scenario, p: Plan, req: Prepared, intended: float) -> None:
        self.recorder.in_flight += 1
        try:
            first = await self.sender.send(req, intended)
            if first is None:
                return
            if await scenario.rest(p, first, time.monotonic(), self.sender):
                self.recorder.unit_completed(time.monotonic(), scenario.name)
        finally:
            self.recorder.in_flight -= 1

    async def _prepare(self) -> tuple[Scenario, Plan, Prepared]:
        scenario, p = self._plan()
        req = await self.sender.prepare(p.terminal, scenario.first(p), p.person.insuplc_admdvs)
        return scenario, p, req

    def _arrivals(self) -> Iterator[float]:
        """Intended send times: evenly spaced (computed from the index, so no drift) or
        a Poisson process from the run's seeded RNG."""
        spec = self.spec
        end = spec.t0 + spec.duration_s
        if spec.arrivals == "uniform":
            n = int(spec.rate_per_s * spec.duration_s)
            yield from (spec.t0 + i / spec.rate_per_s for i in range(n))
            return
        due = spec.t0 + self.rng.expovariate(spec.rate_per_s)
        while due < end:
            yield due
            due += self.rng.expovariate(spec.rate_per_s)

    async def run_open(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        for due in self._arrivals():
            scenario, p, req = await self._prepare()  # ahead of its send time
            delay = due - time.monotonic()
            if delay > SLEEP_MIN_S:
                await asyncio.sleep(delay)
            self.recorder.due(due)
            if len(tasks) >= self.spec.max_in_flight:
                self.recorder.answer(req.infno, due, time.monotonic(), 0, "generator_overflow")
            else:
                task = asyncio.create_task(self._unit(scenario, p, req, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await self._drain(tasks)

    async def run_closed(self) -> None:
        spec = self.spec
        end = spec.t0 + spec.duration_s

        async def user() -> None:
            while time.monotonic() < end:
                scenario, p, req = await self._prepare()
                now = time.monotonic()
                self.recorder.due(now)
                await self._unit(scenario, p, req, now)

        delay = spec.t0 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks = {asyncio.create_task(user()) for _ in range(spec.concurrency)}
        await self._drain(tasks)

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for the units still running (each request has its own timeout); units
        that outlive that are cancelled and recorded as such."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.spec.timeout_s * 6 + DRAIN_GRACE_S)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def drive(
    spec: WorkerSpec, progress: Progress | None = None, *, keep_samples: bool = False
) -> Recorder:
    """Run one worker's share of the load in this process's event loop."""
    recorder = Recorder(spec.t0, keep_samples=keep_samples)
    connector = aiohttp.TCPConnector(limit=spec.connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        driver = Driver(spec, http, recorder)
        await driver.sign_in()
        ticker = None
        if progress is not None:
            ticker = asyncio.create_task(_tick(recorder, progress))
        try:
            if spec.mode == "open":
                await driver.run_open()
            else:
                await driver.run_closed()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
    return recorder


async def _tick(recorder: Recorder, progress: Progress) -> None:
    while True:
        await asyncio.sleep(1.0)
        progress(recorder)
