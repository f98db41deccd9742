"""The pharmacy POS simulator against a real engine process and its database: sales to
patients identified by card (the card agent over a virtual card), by e-card and by ID
number, some cancelled with 2103 and some whose 2102 the simulated network loses (then
reversed with 2601), leave exactly the settlements the simulator reports — every one a
pharmacy purchase (med_type 41) at a pharmacy, the kept ones adding up to the amounts
by fund of the simulator's report (and so do its cross-region ones), the cancelled
and reversed ones cancelled — and a balanced ledger. `yikatong sim pos` does the same from the command line against an
engine seeded by `yikatong seed`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from simulators.card.keys import IssuerMasters
from simulators.ecard import platform_from_env
from simulators.pos import PosSimulator, PosStats
from tests.e2e.conftest import Deployment
from tests.support import EngineProcess, hsm_env

pytestmark = pytest.mark.slow

PURCHASES = 60
PHARMACY_MED_TYPE = "41"


async def _sell(deployment: Deployment) -> PosStats:
    env = hsm_env(deployment.engine.log_path.parent)
    sim = PosSimulator(
        deployment.engine.url,
        deployment.pop,
        seed=11,
        terminal_keys=deployment.terminal_keys,
        masters=IssuerMasters.from_env(env),
        card_share=0.35,
        ecard=platform_from_env(env),
        ecard_share=0.5,
        cancel_share=0.2,
        lost_answer_share=0.2,
    )
    async with aiohttp.ClientSession() as session:
        await sim.start(session)
        try:
            return await sim.run(PURCHASES, concurrency=4)
        finally:
            sim.close()


async def test_sales_by_card_ecard_and_id_number_are_the_settlements_the_report_counts(
    deployment: Deployment,
) -> None:
    stats = await _sell(deployment)
    assert dict(stats.refused) == {}
    assert stats.identity_failures == 0
    assert stats.purchases == PURCHASES
    assert stats.card_purchases >= 1 and stats.ecard_purchases >= 1
    assert stats.id_number_purchases >= 1
    assert stats.cancellations >= 1 and stats.lost_answers >= 1
    # Every lost 2102 was reversed exactly once: undone, or tombstoned if it never came.
    assert sum(stats.reversals.values()) == stats.lost_answers
    assert set(stats.reversals) <= {"reversed", "tombstoned"}
    # Every lost 2103 too: the sale put back, tombstoned, or (the account spent since)
    # the cancellation stands.
    assert sum(stats.cancel_reversals.values()) == stats.lost_cancels
    assert set(stats.cancel_reversals) <= {
        "reversed",
        "tombstoned",
        "reversal_cancellation_stands",
    }
    assert set(stats.by_flow) == {"pharmacy"}
    kept = stats.by_flow["pharmacy"]
    assert kept.settlements == stats.settlements - stats.cancellations > 0

    pharmacies = [
        i.fixmedins_code for i in deployment.pop.institutions if i.inst_type == "pharmacy"
    ]
    conn = await asyncpg.connect(deployment.dsn)
    try:
        kinds = await conn.fetch(
            "SELECT DISTINCT s.med_type, s.fixmedins_code, v.med_type AS visit_med_type,"
            " v.mdtrt_cert_type FROM settlements s JOIN visits v USING (mdtrt_id)"
        )
        money = await conn.fetchrow(
            "SELECT count(*) AS n, sum(medfee_sumamt_fen) AS medfee, sum(fund_pay_sumamt_fen)"
            " AS fund, sum(acct_pay_fen) AS acct, sum(psn_cash_pay_fen) AS cash"
            " FROM settlements WHERE state = 'settled'"
        )
        cross = await conn.fetchrow(
            "SELECT count(*) AS n, sum(medfee_sumamt_fen) AS medfee, sum(fund_pay_sumamt_fen)"
            " AS fund, sum(acct_pay_fen) AS acct, sum(psn_cash_pay_fen) AS cash"
            " FROM settlements WHERE state = 'settled' AND insuplc_admdvs <> mdtrtarea_admvs"
        )
        cancelled = await conn.fetchval(
            "SELECT count(*) FROM settlements WHERE state = 'cancelled'"
        )
    finally:
        await conn.close()
    assert {r["med_type"] for r in kinds} == {PHARMACY_MED_TYPE}
    assert {r["visit_med_type"] for r in kinds} == {PHARMACY_MED_TYPE}
    assert {r["fixmedins_code"] for r in kinds} <= set(pharmacies)
    assert {r["mdtrt_cert_type"] for r in kinds} == {"01", "02", "03"}
    assert (money["n"], money["medfee"], money["fund"], money["acct"], money["cash"]) == (
        kept.settlements,
        kept.medfee_fen,
        kept.fund_fen,
        kept.account_fen,
        kept.cash_fen,
    )
    x = stats.cross_region
    assert x.settlements > 0  # the population has patients insured in other regions
    assert (cross["n"], cross["medfee"], cross["fund"], cross["acct"], cross["cash"]) == (
        x.settlements,
        x.medfee_fen,
        x.fund_fen,
        x.account_fen,
        x.cash_fen,
    )
    assert cancelled == stats.cancellations + stats.reversals.get("reversed", 0)
    report = await deployment.ledger()
    assert report.balanced, report.violations


def _count(label: str, out: str) -> int:
    """The count printed after `label` (a regular expression) in a report."""
    found = re.search(label + r"\s+([\d,]+)\s", out, re.MULTILINE)
    assert found is not None, f"no {label!r} in:\n{out}"
    return int(found.group(1).replace(",", ""))


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


async def test_sim_pos_command_sells_to_a_seeded_population_and_prints_its_report(
    fresh_dsn: str, tmp_path: Path
) -> None:
    env = {"YIKATONG_DATABASE_URL": fresh_dsn, **hsm_env(tmp_path)}
    engine = EngineProcess(tmp_path, {"YIKATONG_DATABASE_URL": fresh_dsn})
    try:
        engine.wait_ready()
        seeded = _yikatong(tmp_path, env, "seed", "--persons", "300", "--seed", "5")
        assert seeded.returncode == 0, seeded.stderr
        done = _yikatong(
            tmp_path,
            env,
            "sim", "pos", "--url", engine.url, "--purchases", "12", "--concurrency", "3",
            "--persons", "300", "--seed", "5", "--lost-answer-share", "0.25",
        )  # fmt: skip
    finally:
        assert engine.stop() == 0, engine.log_text()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert _count("purchases completed", out) == 12
    assert _count("refused or failed", out) == 0
    settled, cancelled = (
        _count(r"settlements \(2102\)", out),
        _count(r"cancellations \(2103\)", out),
    )
    assert _count(r"^\s+pharmacy", out) == settled - cancelled, out  # the by-flow table
    conn = await asyncpg.connect(fresh_dsn)
    try:
        live = await conn.fetchval(
            "SELECT count(*) FROM settlements WHERE state = 'settled' AND med_type = '41'"
        )
    finally:
        await conn.close()
    assert live == settled - cancelled
    checked = _yikatong(tmp_path, env, "ledger", "check")
    assert checked.returncode == 0 and "ledger balanced" in checked.stdout, checked.stdout
