"""`yikatong loadtest --scenario pharmacy --baseline` against an engine already running
(`--url`, `--database-url`) on a database seeded by `yikatong seed`: pgbench runs on the
same server first, then a short uniform open-loop run sends only 2102s, each from a
pharmacy terminal with a 5-line basket by ID number; every one is a complete pharmacy
settlement in the database, the report counts them as settlements and the ratio to
pgbench is printed. Counts only: no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.support import EngineProcess, hsm_env

pytestmark = pytest.mark.slow

RATE, DURATION_S = 15, 3


def _yikatong(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={**full, **env},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_pharmacy_scenario_settles_five_line_baskets_and_prints_the_ratio(
    fresh_dsn: str, tmp_path: Path
) -> None:
    env = {"YIKATONG_DATABASE_URL": fresh_dsn, **hsm_env(tmp_path)}
    engine = EngineProcess(tmp_path, {"YIKATONG_DATABASE_URL": fresh_dsn})
    try:
        engine.wait_ready()
        seeded = _yikatong(tmp_path, env, "seed", "--persons", "300")
        assert seeded.returncode == 0, seeded.stderr
        done = _yikatong(
            tmp_path,
            env,
            "loadtest", "--url", engine.url, "--database-url", fresh_dsn,
            "--scenario", "pharmacy", "--baseline", "--pgbench-duration", "2",
            "--rate", str(RATE), "--duration", str(DURATION_S), "--warmup", "0",
            "--arrivals", "uniform", "--terminals", "4", "--out", "lt",
        )  # fmt: skip
    finally:
        assert engine.stop() == 0, engine.log_text()
    assert done.returncode == 0, done.stdout + done.stderr
    ratio_lines = [line for line in done.stdout.splitlines() if line.startswith("ratio ")]
    assert len(ratio_lines) == 1, done.stdout
    report = json.loads((tmp_path / "lt" / "report.json").read_text())
    assert report["errors"] == 0, report["outcomes"]
    assert set(report["latency_by_infno"]) == {"2102"}
    sent = RATE * DURATION_S
    assert report["latency_by_infno"]["2102"]["count"] == sent
    assert report["throughput"]["settlements_per_s"] == RATE
    assert report["throughput"]["unit"] == "settlement"
    assert report["ratio"] == round(RATE / report["baseline"]["tps"], 4)
    assert (report["settings"]["terminals"], report["settings"]["terminals_of"]) == (4, "pharmacy")

    conn = await asyncpg.connect(fresh_dsn)
    try:
        rows = await conn.fetch(
            "SELECT s.med_type, i.inst_type, v.mdtrt_cert_type,"
            " (SELECT count(*) FROM fee_details d WHERE d.setl_id = s.setl_id) AS lines"
            " FROM settlements s JOIN visits v USING (mdtrt_id)"
            " JOIN institutions i ON i.fixmedins_code = s.fixmedins_code"
            " WHERE s.state = 'settled'"
        )
    finally:
        await conn.close()
    assert len(rows) == sent
    assert {tuple(r) for r in rows} == {("41", "pharmacy", "02", 5)}
    checked = _yikatong(tmp_path, env, "ledger", "check")
    assert checked.returncode == 0 and "ledger balanced" in checked.stdout, checked.stdout
