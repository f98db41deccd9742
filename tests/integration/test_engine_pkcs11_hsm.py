"""The engine with the PKCS#11 backend on a real SoftHSM2 token: request signatures
are checked by deriving each terminal's key inside the token; a wrong PIN stops the
start with exit status 4 and no database started. The token is prepared in a child
process so that this test process never initialises the PKCS#11 library itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from hsm.keys import aes
from hsm.terminalkeys import derive_terminal_mac_key
from simulators.population import generate, load
from terminals.client import Client, Credentials
from tests.support import EngineProcess, http_get, postgres_pids_for

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "246810"
MASTER = bytes(range(200, 232))  # the terminal MAC master (AES-256) put on the token

PREPARE = """
import asyncio, sys
from hsm.keystore import KeyEntry, KeyType
from hsm.pkcs11 import Pkcs11Hsm
async def main():
    hsm = await Pkcs11Hsm.open(sys.argv[1], "yikatong", sys.argv[2], max_waiting=10, deadline_s=10)
    try:
        entry = KeyEntry("terminal.mac.master", 1, KeyType.aes256, "terminal-mac-master", "", bytes.fromhex(sys.argv[3]))
        refused = await hsm.import_test_keys([entry], deadline_s=10)
        assert not refused, refused
    finally:
        await hsm.close()
asyncio.run(main())
"""


def prepare_token(root: Path) -> dict[str, str]:
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(conf),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "yikatong",
            "--pin",
            PIN,
            "--so-pin",
            "13579135",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    subprocess.run(
        [sys.executable, "-c", PREPARE, MODULE, PIN, MASTER.hex()], check=True, env=env, timeout=60
    )
    return {"SOFTHSM2_CONF": str(conf)}


def test_engine_checks_signatures_inside_a_pkcs11_token(
    tmp_path: Path, fresh_dsn: str, data_dir: Path
) -> None:
    token_env = prepare_token(tmp_path / "softhsm")
    engine_env = {
        **token_env,
        "YIKATONG_DATABASE_URL": fresh_dsn,
        "YIKATONG_HSM_BACKEND": "pkcs11",
        "YIKATONG_HSM_PKCS11_PIN": PIN,
    }
    engine = EngineProcess(tmp_path, engine_env)
    try:
        engine.wait_ready()
        body = json.loads(http_get(engine.url + "/readyz")[2])
        assert body["checks"]["hsm"]["backend"] == "pkcs11"
        pop = generate(12, 20, hospitals=1, pharmacies=0, items=5)
        inst = pop.institutions[0]
        key = derive_terminal_mac_key(aes(MASTER), inst.terminal_id).material
        creds = Credentials(
            inst.terminal_id, key, inst.fixmedins_code, "H", inst.admdvs, inst.opter
        )

        async def seed_and_sign_in() -> str:
            conn = await asyncpg.connect(fresh_dsn)
            try:
                await load(conn, pop)
            finally:
                await conn.close()
            async with Client(engine.url, creds) as client:
                return (await client.sign_in()).signinoutb.sign_no

        assert asyncio.run(seed_and_sign_in())
    finally:
        assert engine.stop() == 0, engine.log_text()

    wrong = EngineProcess(
        tmp_path,
        {
            **token_env,
            "YIKATONG_DATABASE_EMBEDDED_DATA_DIR": str(data_dir),
            "YIKATONG_HSM_BACKEND": "pkcs11",
            "YIKATONG_HSM_PKCS11_PIN": "000000",
        },
    )
    code = wrong.proc.wait(60)
    wrong.stop()
    assert code == 4
    assert "user PIN refused" in wrong.log_text()
    assert postgres_pids_for(data_dir) == []


def test_hsm_init_and_list_on_a_token(tmp_path: Path) -> None:
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "SOFTHSM2_CONF": str(conf),
        "YIKATONG_HSM_BACKEND": "pkcs11",
        "YIKATONG_HSM_PKCS11_PIN": PIN,
    }
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "yikatong",
            "--pin",
            PIN,
            "--so-pin",
            "13579135",
        ],
        check=True,
        capture_output=True,
        env=env,
    )

    def hsm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", "hsm", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = hsm("init")
    assert made.returncode == 0, made.stderr
    assert "not created: card.int.sm4" in made.stdout  # SoftHSM2 has no SM4
    listed = hsm("list")
    assert listed.returncode == 0 and "terminal.mac.master" in listed.stdout
    assert hsm("init").returncode == 4  # keys there already
    refused = hsm("import", "--kek", "kek.import", "--label", "x", "--usage", "u", "B0000")
    assert refused.returncode == 4 and "soft backend only" in refused.stderr
