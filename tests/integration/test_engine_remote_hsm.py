"""The engine with the remote HSM backend, served by `yikatong sim hsm` in its own
process: signatures are checked over the wire; with the HSM gone, /readyz says so and
signed requests get 503 hsm_unavailable (never 401, never 500); when it is back,
service resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from simulators.keys import terminal_keys_from_env
from simulators.population import generate, load
from terminals.client import Client, Credentials, ServiceUnavailable
from tests.support import EngineProcess, free_port, hsm_env, http_get


def start_hsm(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **hsm_env(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "sim", "hsm", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, (
                "HSM simulator did not start"
            )
            time.sleep(0.05)


def ready(url: str) -> tuple[int, dict[str, object]]:
    status, _, body = http_get(url + "/readyz")
    return status, json.loads(body)


def test_engine_verifies_signatures_through_a_remote_hsm(tmp_path: Path, fresh_dsn: str) -> None:
    port = free_port()
    hsm = start_hsm(tmp_path, port)
    engine = EngineProcess(
        tmp_path,
        {
            "YIKATONG_DATABASE_URL": fresh_dsn,
            "YIKATONG_HSM_BACKEND": "remote",
            "YIKATONG_HSM_REMOTE_PORT": str(port),
            "YIKATONG_HSM_DEADLINE_S": "0.5",
        },
    )
    try:
        engine.wait_ready()
        status, body = ready(engine.url)
        assert status == 200 and body["checks"]["hsm"]["backend"] == "remote"  # type: ignore[index]

        pop = generate(9, 20, hospitals=1, pharmacies=0, items=5)
        keys = terminal_keys_from_env(hsm_env(tmp_path))
        inst = pop.institutions[0]
        creds = Credentials(
            inst.terminal_id,
            keys(inst.terminal_id),
            inst.fixmedins_code,
            "H",
            inst.admdvs,
            inst.opter,
        )

        async def seed_and_sign_in() -> str:
            import asyncpg

            conn = await asyncpg.connect(fresh_dsn)
            try:
                await load(conn, pop)
            finally:
                await conn.close()
            async with Client(engine.url, creds) as client:
                return (await client.sign_in()).signinoutb.sign_no

        assert asyncio.run(seed_and_sign_in())

        hsm.send_signal(signal.SIGKILL)
        hsm.wait(10)
        status, body = ready(engine.url)
        assert status == 503 and str(body["reason"]).startswith("hsm unavailable:")

        async def sign_in_refused() -> None:
            async with Client(engine.url, creds) as client:
                try:
                    await client.sign_in()
                except ServiceUnavailable:
                    return
                raise AssertionError("a signed request without an HSM must be 503")

        asyncio.run(sign_in_refused())

        hsm = start_hsm(tmp_path, port)
        deadline = time.monotonic() + 10
        while ready(engine.url)[0] != 200:
            assert time.monotonic() < deadline, "engine did not recover with the HSM back"
            time.sleep(0.1)

        async def sign_in_again() -> str:
            async with Client(engine.url, creds) as client:
                return (await client.sign_in()).signinoutb.sign_no

        assert asyncio.run(sign_in_again())
    finally:
        assert engine.stop() == 0, engine.log_text()
        hsm.send_signal(signal.SIGTERM)
        hsm.wait(10)
    assert "Traceback" not in engine.log_text()
