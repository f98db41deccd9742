"""`latency.png`: latency percentiles (by intended send second) and throughput (by
answer second) over the run, drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.report import Report


def plot(report: Report, path: Path) -> None:
    points = report.timeline
    seconds = [p.second for p in points]
    fig, (lat, thr) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        for label, values in (
            ("p50", [p.p50_ms for p in points]),
            ("p99", [p.p99_ms for p in points]),
            ("max", [p.max_ms for p in points]),
        ):
            lat.plot(seconds, values, label=label, linewidth=1.2)
        if any(p.max_ms > 0 for p in points):
            lat.set_yscale("log")
        lat.set_ylabel("latency, ms (by intended send time)")
        lat.grid(True, which="both", alpha=0.3)
        lat.legend(loc="upper left")
        lat.set_title(report.command, fontsize=8)
        thr.plot(
            seconds, [p.due for p in points], label="arrivals (units started) /s", linewidth=1.0
        )
        thr.plot(seconds, [p.answered for p in points], label="answers /s", linewidth=1.0)
        thr.plot(
            seconds,
            [p.units for p in points],
            label=f"{report.throughput.unit}s completed /s",
            linewidth=1.5,
        )
        thr.plot(seconds, [p.errors for p in points], label="errors /s", linewidth=1.0)
        thr.set_xlabel("seconds since start")
        thr.set_ylabel("per second")
        thr.grid(True, alpha=0.3)
        thr.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
