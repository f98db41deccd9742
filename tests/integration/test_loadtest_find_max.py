"""--find-max steps the offered rate up until p99 passes the SLO and reports the last
rate that held: against a server that serves one request at a time in 10 ms (capacity
100/s), 20, 40 and 80 arrivals/s hold with p99 near 10 ms and 160/s does not (the queue
grows by 60 requests a second)."""

from __future__ import annotations

import argparse

from loadtest.run import find_max
from loadtest.target import Target
from loadtest.world import World
from tests.loadtest_fake import ITEM, PERSON, TERMINAL, FakeEngine, serving


def _args() -> argparse.Namespace:
    return argparse.Namespace(
        rate=None,
        start_rate=20.0,
        step_factor=2.0,
        step_duration=1.0,
        max_rate=1000.0,
        slo_ms=40.0,
        workers=1,
        concurrency=1,
        mix=[("person-info", 1)],
        seed=1,
        arrivals="uniform",
        timeout=10.0,
        max_in_flight=10_000,
        connections=64,
    )


async def test_find_max_reports_the_last_rate_whose_p99_stayed_within_the_slo() -> None:
    world = World(terminals=[TERMINAL], catalog=[ITEM], persons=[PERSON], population=1)
    async with serving(FakeEngine(service_s=0.010)) as fake:
        rec, steps, held, offered = await find_max(_args(), world, Target(fake.url, "", [], None))
    assert [s.rate_per_s for s in steps] == [20.0, 40.0, 80.0, 160.0]
    assert [s.held for s in steps] == [True, True, True, False]
    assert "p99" in steps[-1].why_not
    assert held == 80.0 and offered == 80.0
    assert rec.completed == 80  # the report's detail is the step that held, 1 s at 80/s
