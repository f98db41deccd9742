"""The real engine as operators run it: `yikatong serve` in a subprocess, on a free
port, with a throwaway embedded PostgreSQL (or an external one), checked over HTTP and
by the processes it leaves behind (none)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from engine.db import migrate
from engine.db.embedded import EmbeddedPostgres
from tests.support import EngineProcess, http_get, postgres_pids_for


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {"YIKATONG_DATABASE_EMBEDDED_DATA_DIR": str(data_dir), **extra}


def metric_families(url: str) -> dict[str, Metric]:
    status, headers, body = http_get(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def in_flight(url: str) -> float:
    families = metric_families(url)
    return float(families["yikatong_http_requests_in_flight"].samples[0].value)


def test_probes_metrics_and_clean_stop_on_embedded_database(tmp_path: Path, data_dir: Path) -> None:
    engine = EngineProcess(tmp_path, embedded_env(data_dir))
    try:
        engine.wait_ready()
        status, _, body = http_get(engine.url + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"
        status, _, body = http_get(engine.url + "/readyz")
        assert status == 200
        assert json.loads(body)["status"] == "ready"
        status, _, _ = http_get(engine.url + "/no-such-route")
        assert status == 404

        families = metric_families(engine.url)
        requests = families["yikatong_http_requests"]
        seen = {(s.labels["route"], s.labels["status"]) for s in requests.samples}
        assert ("/readyz", "200") in seen
        assert ("unmatched", "404") in seen
        assert families["yikatong_http_request_duration_seconds"].type == "histogram"
        pool = families["yikatong_db_pool_connections"]
        states = {s.labels["state"] for s in pool.samples}
        assert states == {"idle", "in_use"}
        build = families["yikatong_build_info"]
        assert build.samples[0].labels["version"]
        assert postgres_pids_for(data_dir), "the engine runs its own postgres"
    finally:
        code = engine.stop(signal.SIGTERM)
    assert code == 0, engine.log_text()
    assert postgres_pids_for(data_dir) == []


def test_every_log_line_of_a_request_carries_its_request_id(tmp_path: Path, data_dir: Path) -> None:
    engine = EngineProcess(tmp_path, embedded_env(data_dir))
    try:
        engine.wait_ready()
        req = urllib.request.Request(
            engine.url + "/healthz", headers={"X-Request-Id": "his-0042.abc"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["X-Request-Id"] == "his-0042.abc"
        # An id that is not a safe token is replaced, not echoed into logs.
        req = urllib.request.Request(engine.url + "/healthz", headers={"X-Request-Id": "x" * 65})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert len(resp.headers["X-Request-Id"]) == 32
    finally:
        assert engine.stop() == 0
    lines = [json.loads(line) for line in engine.log_text().splitlines() if line.startswith("{")]
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    ours = [line for line in lines if line.get("request_id") == "his-0042.abc"]
    assert ours and ours[0]["route"] == "/healthz" and ours[0]["status"] == 200


def test_sigterm_lets_a_slow_request_finish_and_stops_accepting(
    tmp_path: Path, data_dir: Path
) -> None:
    engine = EngineProcess(tmp_path, embedded_env(data_dir, YIKATONG_SERVER_DEBUG_ROUTES="true"))
    result: dict[str, object] = {}

    def slow_call() -> None:
        result["answer"] = http_get(engine.url + "/debug/sleep?s=2", timeout_s=30)

    try:
        engine.wait_ready()
        caller = threading.Thread(target=slow_call)
        caller.start()
        deadline = time.monotonic() + 10
        while in_flight(engine.url) < 2:  # the slow call plus this scrape
            assert time.monotonic() < deadline, "slow request never arrived"
            time.sleep(0.02)
        engine.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # the listening socket is closed already
            socket.create_connection(("127.0.0.1", engine.port), timeout=2).close()
        caller.join(30)
        status, _, body = result["answer"]  # type: ignore[misc]
        assert status == 200 and json.loads(body) == {"slept_s": 2.0}
        assert engine.proc.wait(30) == 0
    finally:
        engine.stop()
    assert postgres_pids_for(data_dir) == []


def test_sigint_stops_cleanly_and_a_warm_restart_works(tmp_path: Path, data_dir: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        engine = EngineProcess(tmp_path, embedded_env(data_dir))
        try:
            engine.wait_ready()
        finally:
            assert engine.stop(sig) == 0, engine.log_text()
        assert postgres_pids_for(data_dir) == []


def test_readyz_follows_an_external_database_down_and_back(tmp_path: Path) -> None:
    external = EmbeddedPostgres(
        tmp_path / "external", start_timeout_s=60, stop_timeout_s=30, max_connections=50
    )
    external.start()
    engine = EngineProcess(
        tmp_path,
        {"YIKATONG_DATABASE_URL": external.dsn, "YIKATONG_DATABASE_READY_TIMEOUT_S": "0.5"},
    )
    try:
        engine.wait_ready()
        external.stop()
        status, headers, body = http_get(engine.url + "/readyz")
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert json.loads(body)["reason"].startswith("database:")
        assert http_get(engine.url + "/healthz")[0] == 200, "alive even without a database"
        families = metric_families(engine.url)
        assert families["yikatong_db_up"].samples[0].value == 0

        external.start()
        deadline = time.monotonic() + 15
        while http_get(engine.url + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, "readyz did not recover"
            time.sleep(0.1)
    finally:
        assert engine.stop() == 0, engine.log_text()
        # The engine never starts or stops a database it was only pointed at.
        assert postgres_pids_for(external.data_dir), "external database must keep running"
        external.stop()


def test_schema_newer_than_the_engine_refuses_start_and_leaves_no_postgres(
    tmp_path: Path, data_dir: Path
) -> None:
    async def add_future_migration() -> None:
        conn = await asyncpg.connect(server.dsn)
        try:
            await migrate.migrate(conn, migrate.packaged_migrations(), timeout_s=10)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum)"
                " VALUES (9999, 'future', $1)",
                "0" * 64,
            )
        finally:
            await conn.close()

    server = EmbeddedPostgres(data_dir, start_timeout_s=60, stop_timeout_s=30, max_connections=50)
    server.start()
    try:
        asyncio.run(add_future_migration())
    finally:
        server.stop()
    engine = EngineProcess(tmp_path, embedded_env(data_dir))
    code = engine.proc.wait(60)
    engine.stop()
    assert code == 3
    assert "9999, newer than this engine knows" in engine.log_text()
    assert postgres_pids_for(data_dir) == []


def test_port_in_use_fails_start_and_stops_the_database(tmp_path: Path, data_dir: Path) -> None:
    engine_holder = socket.socket()
    engine_holder.bind(("127.0.0.1", 0))
    engine_holder.listen()
    port = engine_holder.getsockname()[1]
    try:
        engine = EngineProcess(tmp_path, embedded_env(data_dir, YIKATONG_SERVER_PORT=str(port)))
        code = engine.proc.wait(60)
        engine.stop()
    finally:
        engine_holder.close()
    assert code == 1
    assert "address already in use" in engine.log_text().lower()
    assert postgres_pids_for(data_dir) == []


def test_sigterm_during_start_leaves_no_postgres(tmp_path: Path, data_dir: Path) -> None:
    engine = EngineProcess(tmp_path, embedded_env(data_dir))
    # Land the signal while the data directory is being initialised.
    deadline = time.monotonic() + 30
    while not (data_dir.exists() and any(data_dir.iterdir())):
        assert time.monotonic() < deadline and engine.proc.poll() is None, engine.log_text()
        time.sleep(0.005)
    code = engine.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), engine.log_text()
    assert postgres_pids_for(data_dir) == []


def test_postgres_orphaned_by_a_killed_engine_is_taken_over(tmp_path: Path, data_dir: Path) -> None:
    first = EngineProcess(tmp_path, embedded_env(data_dir))
    first.wait_ready()
    first.stop(signal.SIGKILL)
    orphans = postgres_pids_for(data_dir)
    assert orphans, "SIGKILL cannot clean up: the postgres is orphaned"

    second = EngineProcess(tmp_path, embedded_env(data_dir))
    try:
        second.wait_ready()
        assert "orphaned embedded postgres" in second.log_text()
    finally:
        assert second.stop() == 0
    assert postgres_pids_for(data_dir) == []


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_migrate_and_status_commands(fresh_dsn: str) -> None:
    env = {"YIKATONG_DATABASE_URL": fresh_dsn}
    status = run_cli("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "schema version: 0000" in status.stdout and "pending" in status.stdout

    first = run_cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001 engine_instances" in first.stdout
    again = run_cli("db", "migrate", env=env)
    assert again.returncode == 0 and "nothing applied" in again.stdout

    status = run_cli("db", "status", env=env)
    assert status.returncode == 0
    assert "pending" not in status.stdout and "0001 engine_instances" in status.stdout


def test_db_status_on_an_unreachable_database_exits_3(tmp_path: Path) -> None:
    env = {
        "YIKATONG_DATABASE_URL": f"postgresql://postgres@/postgres?host={tmp_path}",
        "YIKATONG_DATABASE_CONNECT_TIMEOUT_S": "2",
    }
    result = run_cli("db", "status", env=env)
    assert result.returncode == 3
    assert "database unusable" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["db", "--help"], ["--version"]])
def test_help_and_version(args: list[str]) -> None:
    result = run_cli(*args, env={})
    assert result.returncode == 0
    assert "yikatong" in result.stdout


def test_readyz_covers_the_hsm_and_a_bad_key_file_stops_the_start(
    tmp_path: Path, data_dir: Path
) -> None:
    engine = EngineProcess(tmp_path, embedded_env(data_dir))
    try:
        engine.wait_ready()
        body = json.loads(http_get(engine.url + "/readyz")[2])
        assert body["checks"]["hsm"]["backend"] == "soft"
        families = metric_families(engine.url)
        ops = {s.labels["op"] for s in families["yikatong_hsm_op_duration_seconds"].samples}
        assert "random_bytes" in ops
    finally:
        assert engine.stop() == 0
    wrong = EngineProcess(tmp_path, embedded_env(data_dir, YIKATONG_HSM_MASTER_KEY="00" * 32))
    code = wrong.proc.wait(60)
    wrong.stop()
    assert code == 4
    assert "cannot authenticate key file" in wrong.log_text()
    assert postgres_pids_for(data_dir) == []
