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
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from simulators.card.keys import IssuerMasters
from simulators.ecard import platform_from_env
from simulators.keys import terminal_keys_from_env
from simulators.report import run_his_and_report

SEED = 20261129
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(proc: subprocess.Popen[bytes], base: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited with status {proc.returncode} before ready")
        try:
            if _get(base + "/readyz")[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"engine not ready within {READY_TIMEOUT_S}s")


def _postgres_running(data_dir: Path) -> bool:
    needle = str(data_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if b"postgres" in cmdline and needle in cmdline and state != "Z":
                return True
    return False


def _engine_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def main() -> int:
    root = Path.cwd()
    demo_dir = root / "var" / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    data_dir = demo_dir / "pg"
    persons = int(os.environ.get("YIKATONG_DEMO_PERSONS", "20000"))
    visits = int(os.environ.get("YIKATONG_DEMO_VISITS", "2000"))
    concurrency = int(os.environ.get("YIKATONG_DEMO_CONCURRENCY", "16"))
    port = int(os.environ.get("YIKATONG_SERVER_PORT") or _free_port())
    base = f"http://127.0.0.1:{port}"
    log_path = demo_dir / "engine.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("YIKATONG_")},
        "YIKATONG_SERVER_PORT": str(port),
        "YIKATONG_SERVER_ACCESS_LOG": "false",
        "YIKATONG_DATABASE_EMBEDDED_DATA_DIR": str(data_dir),
        "YIKATONG_DATABASE_POOL_MAX_SIZE": "20",
        # A fresh soft-HSM key file for this run; its master key lives only in the
        # environment of this run's processes.
        "YIKATONG_HSM_KEY_FILE": str(demo_dir / "hsm" / "keys.json"),
        "YIKATONG_HSM_MASTER_KEY": secrets.token_bytes(32).hex(),
    }
    print(f"yikatong demo: new embedded database in {data_dir}; engine log: {log_path}")
    made = _engine_cli(env, "hsm", "init")
    if made.returncode != 0:
        raise RuntimeError(f"hsm init failed: {made.stderr.strip()[-500:]}")
    print(f"  soft HSM key file {env['YIKATONG_HSM_KEY_FILE']}: demo key hierarchy created")
    terminal_keys = terminal_keys_from_env(env)
    masters = IssuerMasters.from_env(env)
    ecard = platform_from_env(env)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            ready_s = _wait_ready(proc, base)
            info = json.loads(_get(base + "/")[1])
            print(f"  engine {info['version']} ready on {base} after {ready_s:.2f}s; serving:")
            for route in info["routes"]:
                print(f"    {route['method']:<6} {base}{route['path']}")
            seeded = _engine_cli(env, "seed", "--persons", str(persons), "--seed", str(SEED))
            if seeded.returncode != 0:
                raise RuntimeError(f"seed failed: {seeded.stderr.strip()[-500:]}")
            print(f"  {seeded.stdout.strip()}")
            print(f"  simulated hospitals: {visits} outpatient visits, {concurrency} at a time")
            stats = asyncio.run(
                run_his_and_report(
                    base, SEED, persons, visits, concurrency, terminal_keys, masters, ecard
                )
            )
            checked = _engine_cli(env, "ledger", "check")
            print("  " + "\n  ".join(checked.stdout.strip().splitlines()))
            if checked.returncode != 0:
                print(f"  ledger check failed (exit {checked.returncode}): {checked.stderr[-800:]}")
            _engine_cli(env, "ledger", "seal")
            verified = _engine_cli(env, "ledger", "verify")
            print("  " + "\n  ".join(verified.stdout.strip().splitlines()))
            metrics = _get(base + "/metrics")[1].decode()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        code = proc.wait(STOP_TIMEOUT_S)
    tx_families = [
        f.name for f in text_string_to_metric_families(metrics) if f.name.startswith("yikatong_tx")
    ]
    leftover = _postgres_running(data_dir)
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
