"""`make demo`: the main job. On a new embedded database: start the engine, seed a
synthetic population, let simulated hospitals drive outpatient visits and, beside
them, simulated pharmacy tills sell baskets (2101 → 2102, some cancelled with 2103, a
few answers lost and reversed with 2601) through the client SDK, print the settlement
report — amounts by flow and fund — the ledger check and the cross-region clearing
balances per region pair, and stop cleanly.

Exit status 0 only if every step worked, every answer satisfied the money identities,
the ledger balanced and no database process is left behind. Sizes can be changed
with YIKATONG_DEMO_PERSONS, YIKATONG_DEMO_VISITS, YIKATONG_DEMO_CONCURRENCY,
YIKATONG_DEMO_PURCHASES and YIKATONG_DEMO_POS_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from simulators.card.keys import IssuerMasters
from simulators.ecard import platform_from_env
from simulators.his import Stats
from simulators.keys import terminal_keys_from_env
from simulators.pos import PosStats
from simulators.report import run_demo_and_report
from simulators.rig import EngineRig, http_get

SEED = 20261129
# Lost 2102 answers per purchase, injected so that every demo runs the reversal path.
LOST_ANSWER_SHARE = 0.01
# Of the few 2103s, enough lost that reversing a cancellation runs in every demo.
LOST_CANCEL_SHARE = 0.25


@dataclass(frozen=True)
class Sizes:
    persons: int
    visits: int
    concurrency: int
    purchases: int
    pos_concurrency: int

    @classmethod
    def from_env(cls) -> Sizes:
        def get(name: str, default: int) -> int:
            return int(os.environ.get(f"YIKATONG_DEMO_{name}", str(default)))

        return cls(
            persons=get("PERSONS", 20_000),
            visits=get("VISITS", 2_000),
            concurrency=get("CONCURRENCY", 16),
            purchases=get("PURCHASES", 400),
            pos_concurrency=get("POS_CONCURRENCY", 4),
        )


def _simulate(rig: EngineRig, n: Sizes) -> tuple[Stats, PosStats]:
    """Hospitals and pharmacies at once, with the keys of the rig's key file."""
    env = rig.env
    print(f"  simulated hospitals: {n.visits} outpatient visits, {n.concurrency} at a time")
    print(f"  simulated pharmacies: {n.purchases} baskets, {n.pos_concurrency} at a time")
    return asyncio.run(
        run_demo_and_report(
            rig.url,
            SEED,
            n.persons,
            n.visits,
            n.concurrency,
            n.purchases,
            n.pos_concurrency,
            terminal_keys_from_env(env),
            IssuerMasters.from_env(env),
            platform_from_env(env),
            lost_answer_share=LOST_ANSWER_SHARE,
            lost_cancel_share=LOST_CANCEL_SHARE,
        )
    )


def main() -> int:
    rig = EngineRig(Path.cwd() / "var" / "demo", {"YIKATONG_DATABASE_POOL_MAX_SIZE": "20"})
    sizes = Sizes.from_env()
    env, base = rig.env, rig.url
    print(f"yikatong demo: new embedded database in {rig.data_dir}; engine log: {rig.log_path}")
    rig.init_keys()
    print(f"  soft HSM key file {env['YIKATONG_HSM_KEY_FILE']}: demo key hierarchy created")
    try:
        ready_s = rig.start()
        info = json.loads(http_get(base + "/")[1])
        print(f"  engine {info['version']} ready on {base} after {ready_s:.2f}s; serving:")
        for route in info["routes"]:
            print(f"    {route['method']:<6} {base}{route['path']}")
        print(f"  {rig.seed(sizes.persons, SEED)}")
        stats, pos_stats = _simulate(rig, sizes)
        checked = rig.cli("ledger", "check", timeout_s=600)
        print("  " + "\n  ".join(checked.stdout.strip().splitlines()))
        if checked.returncode != 0:
            print(f"  ledger check failed (exit {checked.returncode}): {checked.stderr[-800:]}")
        clearing = rig.cli("ledger", "clearing", timeout_s=600)
        print("  by cross-region status, and the clearing per region pair (yuan):")
        print("    " + "\n    ".join(clearing.stdout.strip().splitlines()))
        rig.cli("ledger", "seal", timeout_s=600)
        verified = rig.cli("ledger", "verify", timeout_s=600)
        print("  " + "\n  ".join(verified.stdout.strip().splitlines()))
        metrics = http_get(base + "/metrics")[1].decode()
    except BaseException:
        rig.kill()
        raise
    code = rig.stop()
    tx_families = [
        f.name for f in text_string_to_metric_families(metrics) if f.name.startswith("yikatong_tx")
    ]
    leftover = rig.database_left_running()
    print(f"  metrics: {', '.join(tx_families)} (and more at /metrics)")
    print(
        f"  engine stopped with exit status {code}; embedded postgres "
        f"{'STILL RUNNING' if leftover else 'stopped'}"
    )
    ok = (
        code == 0
        and not leftover
        and checked.returncode == 0
        and clearing.returncode == 0
        and verified.returncode == 0
        and stats.identity_failures == 0
        and stats.settlements > 0
        and pos_stats.identity_failures == 0
        and (sizes.purchases == 0 or pos_stats.settlements > 0)
    )
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
