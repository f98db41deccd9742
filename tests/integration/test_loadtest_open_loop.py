"""The open-loop property of the load generator (no coordinated omission): against a
small protocol server that stalls for one second, every request that was due during
the stall shows the stall in its latency — counted from its intended send time, not
from when the generator got to send it — and the report's timeline shows the stall in
the second it happened, while the second before stays fast."""

from __future__ import annotations

import time

from loadtest.driver import drive
from loadtest.report import timeline
from tests.loadtest_fake import FakeEngine, person_info_spec, serving

RATE = 100.0
DURATION_S = 3.0
STALL_FROM_S, STALL_TO_S = 1.0, 2.0  # after t0


async def test_every_request_due_during_a_one_second_stall_carries_the_stall() -> None:
    async with serving(FakeEngine()) as fake:
        t0 = time.monotonic() + 0.5
        fake.stall = (t0 + STALL_FROM_S, t0 + STALL_TO_S)
        # Few connections: during the stall they are all held, so the requests due
        # meanwhile cannot even leave — a generator that timed from the actual send
        # would report them as fast.
        spec = person_info_spec(fake.url, t0, RATE, DURATION_S, connections=4)
        rec = await drive(spec, keep_samples=True)
    assert rec.samples is not None
    assert len(rec.samples) == int(RATE * DURATION_S)
    assert rec.errors() == 0
    during = [(due, lat) for _, due, lat, _ in rec.samples if STALL_FROM_S <= due < STALL_TO_S]
    # Evenly spaced arrivals at 100/s: one hundred requests were due in the stalled second.
    assert len(during) == int(RATE * (STALL_TO_S - STALL_FROM_S))
    for due, latency_s in during:
        # Answered no earlier than the stall's end, and latency counted from `due`.
        assert latency_s >= (STALL_TO_S - due) - 0.002, (due, latency_s)
    before = [lat for _, due, lat, _ in rec.samples if due < STALL_FROM_S - 0.1]
    assert before and max(before) < 0.5  # the stall did not leak backwards
    # The report's timeline shows it where it happened.
    points = {p.second: p for p in timeline(rec)}
    assert points[1].max_ms >= 950
    assert points[1].p50_ms >= 400  # half the second's requests waited >= 0.5 s
    assert points[0].p99_ms < 500
    assert points[1].due == 100
