"""`make demo`: the main job. On a new embedded database: start the engine, seed a
synthetic population, let simulated hospitals drive outpatient visits through the
client SDK, print the settlement report and the ledger check, and stop cleanly.

Exit status 0 only if every step worked, every answer satisfied the money identities,
the ledger balanced and no database process is left behind. Sizes can be changed
with YIKATONG_DEMO_PERSONS, YIKATONG_DEMO_VISITS and YIKATONG_DEMO_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from simulators.card.keys import IssuerMasters
from simulators.ecard import platform_from_env
from simulators.keys import terminal_keys_from_env
from simulators.report import run_his_and_report
from simulators.rig import EngineRig, http_get

SEED = 20261129


def main() -> int:
    rig = EngineRig(Path.cwd() / "var" / "demo", {"YIKATONG_DATABASE_POOL_MAX_SIZE": "20"})
    persons = int(os.environ.get("YIKATONG_DEMO_PERSONS", "20000"))
    visits = int(os.environ.get("YIKATONG_DEMO_VISITS", "2000"))
    concurrency = int(os.environ.get("YIKATONG_DEMO_CONCURRENCY", "16"))
    env, base = rig.env, rig.url
    print(f"yikatong demo: new embedded database in {rig.data_dir}; engine log: {rig.log_path}")
    rig.init_keys()
    print(f"  soft HSM key file {env['YIKATONG_HSM_KEY_FILE']}: demo key hierarchy created")
    terminal_keys = terminal_keys_from_env(env)
    masters = IssuerMasters.from_env(env)
    ecard = platform_from_env(env)
    try:
        ready_s = rig.start()
        info = json.loads(http_get(base + "/")[1])
        print(f"  engine {info['version']} ready on {base} after {ready_s:.2f}s; serving:")
        for route in info["routes"]:
            print(f"    {route['method']:<6} {base}{route['path']}")
        print(f"  {rig.seed(persons, SEED)}")
        print(f"  simulated hospitals: {visits} outpatient visits, {concurrency} at a time")
        stats = asyncio.run(
            run_his_and_report(
                base, SEED, persons, visits, concurrency, terminal_keys, masters, ecard
            )
        )
        checked = rig.cli("ledger", "check", timeout_s=600)
        print("  " + "\n  ".join(checked.stdout.strip().splitlines()))
        if checked.returncode != 0:
            print(f"  ledger check failed (exit {checked.returncode}): {checked.stderr[-800:]}")
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
        and verified.returncode == 0
        and stats.identity_failures == 0
        and stats.settlements > 0
    )
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
