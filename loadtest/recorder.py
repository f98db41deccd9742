"""What a load run measured: latency histograms (HDR) per transaction code and overall,
outcome counts by (HTTP status, result), and a per-second timeline.

Latency is counted from a request's *intended* send time, never from the moment the
generator got round to sending it, so a stalled engine shows in every request that was
due during the stall (no coordinated omission). Values are recorded in microseconds
into HdrHistogram (3 significant figures for the totals, 2 for the per-second series,
which only feed the plot).

A recorder is plain data that travels between processes: `to_wire()` gives a
msgspec-encodable Struct (histograms in HdrHistogram's compressed base64 form) and
`merge_wire()` adds one into another, so several generator processes report as one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import msgspec
from hdrh.histogram import HdrHistogram

LATENCY_US_MIN = 1
LATENCY_US_MAX = 300_000_000  # 300 s: longer than any request deadline of ours
SIGFIGS_TOTAL = 3
SIGFIGS_SERIES = 2
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
OK = "ok"


def new_histogram(sigfigs: int = SIGFIGS_TOTAL) -> HdrHistogram:
    return HdrHistogram(LATENCY_US_MIN, LATENCY_US_MAX, sigfigs)


def _clamp_us(latency_s: float) -> int:
    us = math.ceil(latency_s * 1_000_000)
    return min(max(us, LATENCY_US_MIN), LATENCY_US_MAX)


class LatencySummary(msgspec.Struct, frozen=True):
    """Percentiles of one histogram, in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def summarize(hist: HdrHistogram) -> LatencySummary:
    if hist.get_total_count() == 0:
        return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    p = [hist.get_value_at_percentile(q) / 1000 for q in PERCENTILES]
    return LatencySummary(
        count=hist.get_total_count(),
        mean_ms=round(hist.get_mean_value() / 1000, 3),
        p50_ms=p[0],
        p90_ms=p[1],
        p99_ms=p[2],
        p999_ms=p[3],
        max_ms=hist.get_max_value() / 1000,
    )


@dataclass
class Second:
    """One second of the run, by second since the run's start."""

    due: int = 0  # requests whose intended send time fell in this second
    answered: int = 0  # answers (any outcome) that arrived in this second
    errors: int = 0  # non-ok outcomes among those answers
    completed: int = 0  # scenario units (settlements) completed in this second
    hist: HdrHistogram = field(default_factory=lambda: new_histogram(SIGFIGS_SERIES))


class WireSecond(msgspec.Struct, frozen=True):
    second: int
    due: int
    answered: int
    errors: int
    completed: int
    hist: str


class WireRecorder(msgspec.Struct, frozen=True):
    total: str
    by_infno: dict[str, str]
    outcomes: list[tuple[str, int, str, int]]  # (infno, http status, result, count)
    seconds: list[WireSecond]
    completed: int
    completed_by: dict[str, int]
    send_lag: str


class Recorder:
    """Collects one generator process's measurements; `t0` is the run's start on the
    monotonic clock, which every timestamp passed in must also use."""

    def __init__(self, t0: float, *, keep_samples: bool = False) -> None:
        self.t0 = t0
        # Every request's (infno, intended offset s, latency s, result), when asked for:
        # for tests and debugging; a long run keeps only the histograms.
        self.samples: list[tuple[str, float, float, str]] | None = [] if keep_samples else None
        self.total = new_histogram()
        self.by_infno: dict[str, HdrHistogram] = {}
        # (infno, http status, result) -> count; status 0 = no HTTP answer at all.
        self.outcomes: dict[tuple[str, int, str], int] = defaultdict(int)
        self.seconds: dict[int, Second] = {}
        self.completed = 0
        self.completed_by: dict[str, int] = defaultdict(int)
        # How late the generator itself sent requests after their intended time: if
        # this grows, the generator, not the engine, is the bottleneck.
        self.send_lag = new_histogram()
        # Latencies since the last progress report (`take_window`).
        self.window = new_histogram(SIGFIGS_SERIES)
        self.in_flight = 0  # units running now (kept by the driver; not merged)

    def _second(self, t: float) -> Second:
        s = int(t - self.t0) if t > self.t0 else 0
        found = self.seconds.get(s)
        if found is None:
            found = self.seconds[s] = Second()
        return found

    def due(self, intended: float) -> None:
        self._second(intended).due += 1

    def sent(self, intended: float, actual: float) -> None:
        self.send_lag.record_value(_clamp_us(max(actual - intended, 0.0)))

    def answer(
        self, infno: str, intended: float, answered: float, status: int, result: str
    ) -> None:
        """One request's outcome: `result` is OK or the name of what went wrong."""
        us = _clamp_us(answered - intended)
        if self.samples is not None:
            self.samples.append((infno, intended - self.t0, answered - intended, result))
        self.total.record_value(us)
        hist = self.by_infno.get(infno)
        if hist is None:
            hist = self.by_infno[infno] = new_histogram()
        hist.record_value(us)
        self.window.record_value(us)
        self.outcomes[(infno, status, result)] += 1
        self._second(intended).hist.record_value(us)
        done = self._second(answered)
        done.answered += 1
        if result != OK:
            done.errors += 1

    def unit_completed(self, at: float, scenario: str) -> None:
        """A whole scenario unit (for the settlement scenarios: one settlement) is done."""
        self.completed += 1
        self.completed_by[scenario] += 1
        self._second(at).completed += 1

    def take_window(self) -> HdrHistogram:
        """The latencies recorded since the last call (for the live progress line)."""
        window, self.window = self.window, new_histogram(SIGFIGS_SERIES)
        return window

    def due_total(self) -> int:
        return sum(s.due for s in self.seconds.values())

    def errors(self) -> int:
        return sum(n for (_, _, result), n in self.outcomes.items() if result != OK)

    def answered(self) -> int:
        return sum(self.outcomes.values())

    def to_wire(self) -> WireRecorder:
        return WireRecorder(
            total=self.total.encode().decode(),
            by_infno={k: h.encode().decode() for k, h in self.by_infno.items()},
            outcomes=[(i, s, r, n) for (i, s, r), n in self.outcomes.items()],
            seconds=[
                WireSecond(k, v.due, v.answered, v.errors, v.completed, v.hist.encode().decode())
                for k, v in sorted(self.seconds.items())
            ],
            completed=self.completed,
            completed_by=dict(self.completed_by),
            send_lag=self.send_lag.encode().decode(),
        )

    def merge_wire(self, wire: WireRecorder) -> None:
        """Add another process's measurements (same t0 reference) into this one."""
        self.total.decode_and_add(wire.total)
        for infno, enc in wire.by_infno.items():
            hist = self.by_infno.get(infno)
            if hist is None:
                hist = self.by_infno[infno] = new_histogram()
            hist.decode_and_add(enc)
        for infno, status, result, n in wire.outcomes:
            self.outcomes[(infno, status, result)] += n
        for ws in wire.seconds:
            s = self.seconds.get(ws.second)
            if s is None:
                s = self.seconds[ws.second] = Second()
            s.due += ws.due
            s.answered += ws.answered
            s.errors += ws.errors
            s.completed += ws.completed
            s.hist.decode_and_add(ws.hist)
        self.completed += wire.completed
        for name, n in wire.completed_by.items():
            self.completed_by[name] += n
        self.send_lag.decode_and_add(wire.send_lag)
