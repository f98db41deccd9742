"""Full card authentication per second (run by `make bench`, not by `make test`):
the card agent's `person_info()` — power on, SELECT SSSE, EF05, GET CHALLENGE ×3,
9301 (engine: challenge from the HSM, external-auth cryptogram), EXTERNAL and
INTERNAL AUTHENTICATE, EF06, 1101 by card (engine: challenge consumed, cryptogram
verified through the soft HSM, card and person checked) — against a real engine
process with its embedded database, everything on this machine's 2 cores.

- `memory_sequential`: one agent, one generation-3 card in an in-memory reader, one
  authentication after another (latency-bound: two signed engine round trips);
- `memory_8_agents`: eight counters at once, each with its own reader and card;
- `pcsc_sequential`: the same agent over PcscReader → pcscd → vpcd → vpicc (about
  15 APDUs per authentication through the real PC/SC stack).
One round = `PER_ROUND` authentications per agent; ops/s × PER_ROUND (× agents) is
the authentication rate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import uvloop

from card.memory import MemoryReader
from card.pcsc import PcscReader
from card.reader import Reader
from simulators.card.factory import build_card
from simulators.card.keys import IssuerMasters
from simulators.pcscd import PcscdManager
from terminals.agent.core import CardAgent
from tests.e2e.conftest import Deployment, deployment  # noqa: F401  (fixture)
from tests.pcsc_support import InsertCard
from tests.support import hsm_env

PER_ROUND = 20


def masters_of(d: Deployment) -> IssuerMasters:
    env = hsm_env(d.engine.log_path.parent)
    return IssuerMasters.from_env(env)


def good_indexes(d: Deployment, n: int) -> list[int]:
    out = []
    for i in range(len(d.pop.persons)):
        c = d.pop.card(i)
        if c.generation == 3 and c.usable_on(dt.date.today()):
            out.append(i)
            if len(out) == n:
                return out
    raise AssertionError("not enough usable cards")


def run_agents(benchmark: Any, d: Deployment, readers: list[Reader], hospitals: int) -> None:
    loop = uvloop.new_event_loop()
    clients = [d.client(d.hospital(i % hospitals)) for i in range(len(readers))]
    agents = [CardAgent(r, c) for r, c in zip(readers, clients, strict=True)]

    async def burst(agent: CardAgent) -> None:
        for _ in range(PER_ROUND):
            await agent.person_info()

    async def round_() -> None:
        await asyncio.gather(*(burst(a) for a in agents))

    async def close() -> None:
        for a, c in zip(agents, clients, strict=True):
            await a.close()
            await c.close()

    async def open_clients() -> None:
        for c in clients:
            await c.__aenter__()

    try:
        loop.run_until_complete(open_clients())
        loop.run_until_complete(round_())  # warm-up: sign-in, connections
        benchmark.pedantic(lambda: loop.run_until_complete(round_()), rounds=5, iterations=1)
    finally:
        loop.run_until_complete(close())
        loop.close()
    benchmark.extra_info["authentications_per_round"] = PER_ROUND * len(readers)


def memory_readers(d: Deployment, n: int) -> list[Reader]:
    masters = masters_of(d)
    return [
        MemoryReader(build_card(d.pop.card(i), d.pop.persons[i], masters), name=f"mem {i}")
        for i in good_indexes(d, n)
    ]


def test_card_auth_memory_sequential(benchmark: Any, deployment: Deployment) -> None:  # noqa: F811
    run_agents(benchmark, deployment, memory_readers(deployment, 1), 1)


def test_card_auth_memory_8_agents(benchmark: Any, deployment: Deployment) -> None:  # noqa: F811
    run_agents(benchmark, deployment, memory_readers(deployment, 8), 8)


def test_card_auth_pcsc_sequential(
    benchmark: Any,
    deployment: Deployment,  # noqa: F811
    pcscd: PcscdManager,
    insert_card: InsertCard,
) -> None:
    [i] = good_indexes(deployment, 1)
    insert_card(
        build_card(deployment.pop.card(i), deployment.pop.persons[i], masters_of(deployment))
    )
    reader = PcscReader(pcscd.readers[0])
    try:
        run_agents(benchmark, deployment, [reader], 1)
    finally:
        reader.close()
