"""`yikatong loadtest` as a newcomer runs it: no --url, so it starts its own engine on a
fresh embedded database, seeds it, runs pgbench on the same server (--baseline), drives
a short low-rate open-loop load, and writes all three report files into a directory
given relative to the working directory; the ratio line is printed and the engine and
its database are stopped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import postgres_pids_for


def test_short_baseline_run_writes_all_three_reports_and_prints_the_ratio(
    tmp_path: Path,
) -> None:
    out = tmp_path / "lt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "engine", "loadtest",
            "--baseline", "--pgbench-duration", "2",
            "--rate", "15", "--duration", "3", "--warmup", "1",
            "--persons", "300", "--terminals", "3",
            "--arrivals", "uniform", "--out", "lt",  # relative, as the README has it
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ratio_lines = [line for line in done.stdout.splitlines() if line.startswith("ratio ")]
    assert len(ratio_lines) == 1, done.stdout
    for name in ("report.json", "report.md", "latency.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report["errors"] == 0, report["outcomes"]
    # 15 arrivals/s for 3 s, each one settlement of three requests.
    by_infno = report["latency_by_infno"]
    assert set(by_infno) == {"2201", "2204", "2207"}
    assert by_infno["2207"]["count"] == 45
    assert report["throughput"]["settlements_per_s"] == 15.0
    assert report["baseline"]["tps"] > 0
    assert report["ratio"] == round(15.0 / report["baseline"]["tps"], 4)
    assert report["population"] == 300
    assert {"engine", "postgres", "generator"} <= set(report["cpu"]["groups"])
    assert report["cpu"]["groups"]["engine"]["cpu_s"] > 0
    assert report["cpu"]["groups"]["postgres"]["cpu_s"] > 0
    assert "## Latency" in (out / "report.md").read_text()
    assert postgres_pids_for(out / "engine" / "pg") == []
