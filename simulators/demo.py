"""`make demo`: start the engine on its embedded database, check that it is ready,
show where it listens and what it serves, and stop it cleanly.

Later issues extend this with simulated hospitals and pharmacies driving settlements
and a settlement report. Exit status 0 only if every step worked and no database
process is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

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


def main() -> int:
    root = Path.cwd()
    var = root / "var"
    var.mkdir(exist_ok=True)
    data_dir = Path(os.environ.get("YIKATONG_DATABASE_EMBEDDED_DATA_DIR", var / "pg"))
    port = int(os.environ.get("YIKATONG_SERVER_PORT") or _free_port())
    base = f"http://127.0.0.1:{port}"
    log_path = var / "demo-engine.log"
    env = {
        **os.environ,
        "YIKATONG_SERVER_PORT": str(port),
        "YIKATONG_DATABASE_EMBEDDED_DATA_DIR": str(data_dir),
    }
    fresh = not (data_dir / "PG_VERSION").exists()
    print(
        f"yikatong demo: starting the engine ({'new' if fresh else 'existing'} database"
        f" in {data_dir}); engine log: {log_path}"
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            ready_s = _wait_ready(proc, base)
            _, index = _get(base + "/")
            _, ready = _get(base + "/readyz")
            _, health = _get(base + "/healthz")
            _, metrics = _get(base + "/metrics")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        code = proc.wait(STOP_TIMEOUT_S)

    info = json.loads(index)
    families = sorted(
        {
            f.name
            for f in text_string_to_metric_families(metrics.decode())
            if f.name.startswith("yikatong_")
        }
    )
    latency_ms = json.loads(ready)["checks"]["database"]["latency_ms"]
    print()
    print(f"  engine {info['version']} listened on {base}")
    print(f"  ready after {ready_s:.2f}s (process start to /readyz 200)")
    print(
        f"  /healthz: {json.loads(health)['status']}; /readyz: database answered in {latency_ms} ms"
    )
    print("  serving:")
    for route in info["routes"]:
        print(f"    {route['method']:<6} {base}{route['path']}")
    print(f"  metrics families: {', '.join(families)}")
    leftover = _postgres_running(data_dir)
    print(
        f"  stopped with exit status {code}; embedded postgres "
        f"{'STILL RUNNING' if leftover else 'stopped'}"
    )
    return 0 if code == 0 and not leftover else 1


if __name__ == "__main__":
    sys.exit(main())
