"""`report.md`: the load report for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from loadtest.procstat import CpuReport
from loadtest.profile import Profile
from loadtest.recorder import LatencySummary
from loadtest.report import Report

LAT_HEAD = "| | count | mean | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|"


def _lat_row(name: str, s: LatencySummary) -> str:
    return (
        f"| {name} | {s.count} | {s.mean_ms:.2f} | {s.p50_ms:.2f} | {s.p90_ms:.2f}"
        f" | {s.p99_ms:.2f} | {s.p999_ms:.2f} | {s.max_ms:.2f} |"
    )


def _kv(d: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v} |" for k, v in d.items())


def _cpu(cpu: CpuReport) -> list[str]:
    lines = [
        "## Where the cores went",
        "",
        f"{cpu.cpu_count} CPUs × {cpu.wall_s:.1f} s = {cpu.machine_cpu_s:.1f} CPU-seconds"
        " in the measured window.",
        "",
        "| process group | CPU s | share of the machine | cores busy | RSS max MiB | PSS max MiB | complete |",
        "|---|---|---|---|---|---|---|",
    ]

    def pct(x: float | None) -> str:
        return "unknown" if x is None else f"{x * 100:.1f} %"

    for name, g in cpu.groups.items():
        cpu_s = "unknown" if g.cpu_s is None else f"{g.cpu_s:.2f}"
        cores = "" if g.cores_avg is None else f"{g.cores_avg:.2f}"
        rss = "" if not g.rss_bytes_max else f"{g.rss_bytes_max / 2**20:.0f}"
        pss = "" if not g.pss_bytes_max else f"{g.pss_bytes_max / 2**20:.0f}"
        lines.append(
            f"| {name} | {cpu_s} | {pct(g.cpu_share)} | {cores} | {rss} | {pss}"
            f" | {'yes' if g.complete else 'no (lower bound)'} |"
        )
    lines.append(f"| everything else | {cpu.others_cpu_s:.2f} | {pct(cpu.others_share)} | | | | |")
    lines.append(f"| idle | {cpu.idle_cpu_s:.2f} | {pct(cpu.idle_share)} | | | | |")
    lines += ["", "RSS counts PostgreSQL's shared buffers once per backend; PSS shares them out."]
    return [*lines, ""]


def _profile(p: Profile) -> list[str]:
    lines = [
        "## Where the engine's CPU went (py-spy)",
        "",
        f"{p.samples} samples of the busy engine; raw stacks in `{Path(p.raw_file).name}`.",
        "",
        "| own time | function | | inclusive | function |",
        "|---|---|---|---|---|",
    ]
    for i in range(max(len(p.own), len(p.inclusive))):
        a = p.own[i] if i < len(p.own) else None
        b = p.inclusive[i] if i < len(p.inclusive) else None
        lines.append(
            f"| {'' if a is None else f'{a.share * 100:.1f} %'} | {'' if a is None else f'`{a.frame}`'}"
            f" | | {'' if b is None else f'{b.share * 100:.1f} %'} | {'' if b is None else f'`{b.frame}`'} |"
        )
    return [*lines, ""]


def render(r: Report) -> str:
    t = r.throughput
    out = [
        "# Load report",
        "",
        f"`{r.command}`",
        "",
        f"Started {r.started_at}; {r.population} insured persons in the engine's database.",
        "",
        "| setting | value |",
        "|---|---|",
        _kv(r.settings),
        "",
        "## Throughput",
        "",
        "| measure | value |",
        "|---|---|",
        f"| offered rate | {'closed loop' if t.offered_per_s is None else f'{t.offered_per_s:.1f} /s'} |",
        f"| answers | {t.answered_per_s:.1f} /s ({t.ok_per_s:.1f} /s ok) |",
        f"| {t.unit}s completed | {t.units_per_s:.1f} /s |",
        f"| settlements | {t.settlements_per_s:.1f} /s |",
        f"| measured | {t.measured_s:.1f} s |",
        f"| errors | {r.errors} |",
        "",
    ]
    if r.baseline is not None:
        b = msgspec.to_builtins(r.baseline)
        out += [
            "## Baseline: pgbench TPC-B on the same server",
            "",
            "| measure | value |",
            "|---|---|",
            _kv({k: v for k, v in b.items() if not isinstance(v, (list, dict))}),
            "",
            f"**ratio {r.ratio:.3f}** = {t.settlements_per_s:.1f} settlements/s ÷"
            f" {b.get('tps', 0):.0f} pgbench TPS"
            if r.ratio is not None
            else "ratio: not computed",
            "",
        ]
    if r.steps:
        out += [
            "## Find max",
            "",
            "| offered /s | achieved units/s | p99 ms | errors | held |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {s.rate_per_s:.1f} | {s.units_per_s:.1f} | {s.p99_ms:.2f} | {s.errors}"
            f" | {'yes' if s.held else 'no: ' + s.why_not} |"
            for s in r.steps
        ]
        held = r.max_rate_held_per_s
        out += ["", f"Highest rate that held: {'none' if held is None else f'{held:.1f} /s'}", ""]
    out += ["## Latency (ms, from the intended send time)", "", LAT_HEAD]
    out.append(_lat_row("all requests", r.latency))
    out += [_lat_row(infno, s) for infno, s in r.latency_by_infno.items()]
    out += ["", "Generator send lag (ms after the intended time):", "", LAT_HEAD]
    out += [_lat_row("send lag", r.send_lag), ""]
    if r.db_round_trips is not None:
        out += ["## Database round trips per request (engine's count)", ""]
        out += ["| infno | mean round trips |", "|---|---|"]
        out += [f"| {k} | {v:.2f} |" for k, v in sorted(r.db_round_trips.items())]
        out.append("")
    out += ["## Outcomes", "", "| infno | HTTP | result | count |", "|---|---|---|---|"]
    out += [f"| {o.infno} | {o.http_status} | {o.result} | {o.count} |" for o in r.outcomes]
    out.append("")
    if isinstance(r.cpu, CpuReport):
        out += _cpu(r.cpu)
    if r.profile is not None:
        out += _profile(r.profile)
    out += ["## Machine", "", "| | |", "|---|---|", _kv(r.machine), ""]
    out += ["![latency and throughput over time](latency.png)", ""]
    return "\n".join(out)
