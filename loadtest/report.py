"""The load run's report: `report.json` for machines, `report.md` for people and
`latency.png` (latency percentiles and throughput over time, drawn with matplotlib).

Everything in it comes from the recorder (HDR histograms, outcomes, timeline), the CPU
and RSS sampler, the engine's own /metrics (database round trips per transaction
code) and, with `--baseline`, pgbench on the same server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from loadtest.profile import Profile
from loadtest.recorder import OK, LatencySummary, Recorder, summarize


class Throughput(msgspec.Struct, frozen=True):
    offered_per_s: float | None  # the target arrival rate (open loop)
    answered_per_s: float
    ok_per_s: float
    units_per_s: float  # completed scenario units, e.g. settlements
    unit: str
    settlements_per_s: float  # units of settling scenarios only
    measured_s: float


class Outcome(msgspec.Struct, frozen=True):
    infno: str
    http_status: int  # 0: no HTTP answer (timeout, connection error, overflow)
    result: str
    count: int


class Point(msgspec.Struct, frozen=True):
    second: int
    due: int
    answered: int
    errors: int
    units: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class Step(msgspec.Struct, frozen=True):
    """One rate step of --find-max."""

    rate_per_s: float
    units_per_s: float
    p99_ms: float
    errors: int
    held: bool
    why_not: str = ""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    population: int
    throughput: Throughput
    latency: LatencySummary
    latency_by_infno: dict[str, LatencySummary]
    send_lag: LatencySummary
    outcomes: list[Outcome]
    errors: int
    timeline: list[Point]
    cpu: Any = None  # loadtest.procstat report, or None when not sampled
    db_round_trips: dict[str, float] | None = None  # mean per request, by infno
    baseline: Any = None  # loadtest.baseline result
    ratio: float | None = None  # settlements/s ÷ pgbench TPS
    steps: list[Step] | None = None
    max_rate_held_per_s: float | None = None
    profile: Profile | None = None  # --profile: py-spy's top entries for the engine


def timeline(rec: Recorder) -> list[Point]:
    out = []
    for second, s in sorted(rec.seconds.items()):
        h = s.hist
        has = h.get_total_count() > 0
        out.append(
            Point(
                second=second,
                due=s.due,
                answered=s.answered,
                errors=s.errors,
                units=s.completed,
                p50_ms=h.get_value_at_percentile(50) / 1000 if has else 0.0,
                p99_ms=h.get_value_at_percentile(99) / 1000 if has else 0.0,
                max_ms=h.get_max_value() / 1000 if has else 0.0,
            )
        )
    return out


def outcomes(rec: Recorder) -> list[Outcome]:
    return [
        Outcome(infno, status, result, n)
        for (infno, status, result), n in sorted(rec.outcomes.items())
    ]


def throughput(
    rec: Recorder,
    measured_s: float,
    offered: float | None,
    unit: str,
    settling: set[str],
) -> Throughput:
    ok = sum(n for (_, _, r), n in rec.outcomes.items() if r == OK)
    settled = sum(n for name, n in rec.completed_by.items() if name in settling)
    return Throughput(
        offered_per_s=offered,
        answered_per_s=round(rec.answered() / measured_s, 2),
        ok_per_s=round(ok / measured_s, 2),
        units_per_s=round(rec.completed / measured_s, 2),
        unit=unit,
        settlements_per_s=round(settled / measured_s, 2),
        measured_s=round(measured_s, 3),
    )


def latency_parts(rec: Recorder) -> tuple[LatencySummary, dict[str, LatencySummary]]:
    return summarize(rec.total), {k: summarize(h) for k, h in sorted(rec.by_infno.items())}


def write(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    md_path = out_dir / "report.md"
    from loadtest.markdown import render

    md_path.write_text(render(report))
    png_path = out_dir / "latency.png"
    from loadtest.plot import plot

    plot(report, png_path)
    return [json_path, md_path, png_path]
