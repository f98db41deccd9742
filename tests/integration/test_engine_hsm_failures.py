"""The engine tells an HSM misconfiguration from an HSM outage (REVIEW.md §5).

The engine starts with a key file that lacks the terminal MAC master (at start it
only authenticates the key file; which keys it holds is seen per request), so every
signed request meets `KeyNotFound`: it is answered 503 hsm_misconfigured (9004)
*without* Retry-After, on every retry, and logged at ERROR once, not once per request.
Through the remote backend the same holds for a simulator serving such a key file;
with the simulator gone the answer is 503 hsm_unavailable (9003) *with* Retry-After.
"""

from __future__ import annotations

import asyncio
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

import asyncpg

from hsm.keystore import KeyStore
from hsm.soft_admin import demo_hierarchy
from simulators.population import generate, load
from terminals import signing
from terminals.results import ResultCode
from tests.support import TEST_MASTER_KEY_HEX, EngineProcess, free_port, http_get

MASTER_LABEL = "terminal.mac.master"


def key_file_without_master(tmp: Path) -> Path:
    path = tmp / "keys-without-master.json"
    entries = [e for e in demo_hierarchy() if e.label != MASTER_LABEL]
    KeyStore(entries).save(path, bytes.fromhex(TEST_MASTER_KEY_HEX))
    return path


def seed(dsn: str) -> str:
    """A population with one hospital; its terminal id."""
    pop = generate(11, 5, hospitals=1, pharmacies=0, items=5)

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await load(conn, pop)
        finally:
            await conn.close()

    asyncio.run(run())
    return pop.institutions[0].terminal_id


def wait_serving(engine: EngineProcess, timeout_s: float = 60.0) -> tuple[int, dict[str, object]]:
    """Until the database is up: /readyz then says ready, or unready because of the HSM
    (once /readyz probes the terminal MAC master). Its status and body."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert engine.proc.poll() is None, engine.log_text()
        try:
            status, _, raw = http_get(engine.url + "/readyz", timeout_s=2)
            body = json.loads(raw)
            if status == 200 or str(body.get("reason", "")).startswith("hsm"):
                return status, body
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"engine not serving in {timeout_s}s:\n{engine.log_text()}")


def signed_post(url: str, terminal_id: str) -> tuple[int, dict[str, str], dict[str, object]]:
    """A signed POST /api/v1/tx (any key will do: the HSM refuses before comparing)."""
    body = b"{}"
    headers = signing.signed_headers(
        terminal_id,
        bytes(32),
        "POST",
        "/api/v1/tx",
        body,
        now_s=int(time.time()),
        nonce=signing.new_nonce(),
    )
    request = urllib.request.Request(url + "/api/v1/tx", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def assert_misconfigured(status: int, headers: dict[str, str], answer: dict[str, object]) -> None:
    assert status == 503
    assert "Retry-After" not in headers
    assert answer["yk_code"] == ResultCode.hsm_misconfigured.value
    assert answer["yk_result"] == "hsm_misconfigured"
    assert MASTER_LABEL not in json.dumps(answer)  # key labels stay in the operator's log


def misconfiguration_errors(log_text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("level") == "error" and str(line.get("msg", "")).startswith("HSM misconf")
    ]


def test_a_key_file_without_the_terminal_mac_master_is_misconfiguration_not_try_again(
    tmp_path: Path, fresh_dsn: str
) -> None:
    engine = EngineProcess(
        tmp_path,
        {
            "YIKATONG_DATABASE_URL": fresh_dsn,
            "YIKATONG_HSM_KEY_FILE": str(key_file_without_master(tmp_path)),
        },
    )
    try:
        status, body = wait_serving(engine)
        if status != 200:  # /readyz probes the master: it must say which key is missing
            assert "misconfigured" in str(body["reason"]) and MASTER_LABEL in str(body["reason"])
        terminal_id = seed(fresh_dsn)
        for _ in range(3):
            assert_misconfigured(*signed_post(engine.url, terminal_id))
    finally:
        assert engine.stop() == 0, engine.log_text()
    log_text = engine.log_text()
    reported = misconfiguration_errors(log_text)
    assert len(reported) == 1, log_text
    assert "KeyNotFound" in str(reported[0]["msg"]) and MASTER_LABEL in str(reported[0]["msg"])
    assert "Traceback" not in log_text


def start_simulator(key_file: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "YIKATONG_HSM_KEY_FILE": str(key_file),
        "YIKATONG_HSM_MASTER_KEY": TEST_MASTER_KEY_HEX,
    }
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
            assert time.monotonic() < deadline and proc.poll() is None, "simulator did not start"
            time.sleep(0.05)


def test_through_the_remote_hsm_misconfiguration_and_outage_get_different_answers(
    tmp_path: Path, fresh_dsn: str
) -> None:
    port = free_port()
    simulator = start_simulator(key_file_without_master(tmp_path), port)
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
        wait_serving(engine)
        terminal_id = seed(fresh_dsn)
        for _ in range(2):
            assert_misconfigured(*signed_post(engine.url, terminal_id))

        simulator.send_signal(signal.SIGKILL)
        simulator.wait(10)
        status, headers, answer = signed_post(engine.url, terminal_id)
        assert status == 503 and headers.get("Retry-After") == "1"
        assert answer["yk_code"] == ResultCode.hsm_unavailable.value
    finally:
        assert engine.stop() == 0, engine.log_text()
        if simulator.poll() is None:
            simulator.send_signal(signal.SIGTERM)
            simulator.wait(10)
    log_text = engine.log_text()
    assert len(misconfiguration_errors(log_text)) == 1, log_text
    assert "Traceback" not in log_text
