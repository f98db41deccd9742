"""No secret reaches a child process (docs/SECURITY.md): with the HSM master key, a
PKCS#11 PIN, a password, a token and a DSN in the parent's environment, the
environment of every process the engine and the simulators start — read back from
/proc/PID/environ, and for PostgreSQL also through SQL as a superuser would — holds
none of them: the embedded PostgreSQL postmaster and its backends, pcscd, the vpicc
process of `yikatong sim card insert`, the HSM simulator, and the rig's engine (which
gets its master key from a 0600 file instead) and that engine's PostgreSQL.

Each child still does its job with what it was given explicitly (the card answers with
its own keys, the HSM simulator serves its keys, the rig's engine is ready), so the
test cannot pass by starting children that lack what they need.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from card.pcsc import PcscReader
from card.ssse import CardSession
from engine.db.embedded import EmbeddedPostgres, running_postmaster
from hsm.cardauth import internal_auth_cryptogram
from hsm.keystore import MASTER_KEY_FILE_ENV
from hsm.remote import RemoteHsm
from hsm.secret_guard import is_secret_name
from simulators import hsm_server
from simulators.card.keys import IssuerMasters, card_keys
from simulators.pcscd import PcscdManager
from simulators.population import Population
from simulators.rig import EngineRig
from tests.pcsc_support import SEED
from tests.support import TEST_MASTER_KEY_HEX, free_port, hsm_env

PARENT_SECRETS = {
    "YIKATONG_HSM_MASTER_KEY": TEST_MASTER_KEY_HEX,
    "YIKATONG_HSM_PKCS11_PIN": "7355608",
    "BILLING_DB_PASSWORD": "pw-5f0c1d2e-never-in-a-child",
    "GITHUB_TOKEN": "ghp_3b9e6a1c-never-in-a-child",
    "APP_SECRET": "secret-9d8c7b6a-never-in-a-child",
    "DATABASE_URL": "postgresql://app:dsn-pw-1a2b3c@db.example/app",
}


@pytest.fixture
def parent_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The secrets, set in this (the parent) process's environment."""
    for name, value in PARENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    return dict(PARENT_SECRETS)


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def names_in(raw: bytes) -> set[str]:
    return {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}


def assert_no_secret(
    raw: bytes, secrets: dict[str, str], who: str, passed: frozenset[str] = frozenset()
) -> None:
    """No secret name (but the ones `passed` explicitly) and no secret value."""
    leaked_names = sorted(n for n in names_in(raw) if is_secret_name(n) and n not in passed)
    assert leaked_names == [], f"{who} inherited {leaked_names}"
    leaked_values = [name for name, value in secrets.items() if value.encode() in raw]
    assert leaked_values == [], f"{who} holds the value of {leaked_values}"


async def test_embedded_postgres_and_its_backends_inherit_no_secret(
    tmp_path: Path, parent_secrets: dict[str, str]
) -> None:
    server = EmbeddedPostgres(
        tmp_path / "pg" / "data", start_timeout_s=60, stop_timeout_s=30, max_connections=20
    )
    server.start()
    try:
        postmaster = running_postmaster(server.data_dir)
        assert postmaster is not None
        raw = environ_of(postmaster)
        assert b"PATH=" in raw  # an environment, not a blank (backends blank theirs)
        assert_no_secret(raw, parent_secrets, "the postmaster")
        conn = await asyncpg.connect(server.dsn, timeout=10)
        try:  # how a superuser SQL session reads it: as the server's OS user
            via_sql = await conn.fetchval(
                f"SELECT pg_read_binary_file('/proc/{postmaster}/environ')"
            )
        finally:
            await conn.close()
        assert via_sql == raw
    finally:
        server.stop()


def test_pcscd_inherits_no_secret(pcscd: PcscdManager, parent_secrets: dict[str, str]) -> None:
    """The session's pcscd, restarted while the parent holds the secrets."""
    pcscd.stop()
    pcscd.start()
    assert pcscd.pid is not None
    raw = environ_of(pcscd.pid)
    assert b"PATH=" in raw
    assert_no_secret(raw, parent_secrets, "pcscd")
    assert not any(n.startswith("YIKATONG_") for n in names_in(raw))


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run"
    yield path
    subprocess.run(
        [sys.executable, "-m", "engine", "sim", "card", "remove", "--run-dir", str(path)],
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_the_vpicc_of_sim_card_insert_gets_its_card_keys_not_the_master_key(
    pcscd: PcscdManager,
    population: Population,
    key_env: dict[str, str],
    parent_secrets: dict[str, str],
    run_dir: Path,
) -> None:
    index = 2  # generation 3 (SM4)
    env = {**os.environ, **key_env}
    inserted = subprocess.run(
        [
            *(sys.executable, "-m", "engine", "sim", "card", "insert", "--index", str(index)),
            *("--seed", str(SEED), "--persons", str(len(population.persons))),
            *("--run-dir", str(run_dir)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert inserted.returncode == 0, inserted.stderr
    vpicc_pid = json.loads((run_dir / "card-slot0.json").read_bytes())["pid"]
    raw = environ_of(vpicc_pid)
    assert_no_secret(raw, {**parent_secrets, **key_env}, "the vpicc process")
    # The card authenticates with the keys derived from the issuer masters: it got them.
    expected = population.card(index)
    masters = IssuerMasters.from_env(key_env)
    with PcscReader(pcscd.readers[0]) as reader, CardSession(reader) as session:
        assert session.open().card_sn == expected.card_sn
        factor, challenge = os.urandom(8), os.urandom(8)
        key = card_keys(masters, expected).internal_auth
        cryptogram = session.internal_authenticate(factor, challenge)
        assert cryptogram == internal_auth_cryptogram(key, factor, challenge)


async def test_the_hsm_simulator_gets_its_master_key_through_a_pipe(
    tmp_path: Path, parent_secrets: dict[str, str]
) -> None:
    key_file = Path(hsm_env(tmp_path)["YIKATONG_HSM_KEY_FILE"])
    port = free_port()
    proc = hsm_server.spawn(key_file, bytes.fromhex(TEST_MASTER_KEY_HEX), port=port)
    try:
        assert_no_secret(environ_of(proc.pid), parent_secrets, "the HSM simulator")
        client = RemoteHsm("127.0.0.1", port, pool_size=1)
        try:
            keys = await client.list_keys(deadline_s=5)
        finally:
            await client.close()
        assert "terminal.mac.master" in {k.label for k in keys}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_rigs_engine_reads_a_0600_master_key_file_and_its_postgres_gets_nothing(
    tmp_path: Path, parent_secrets: dict[str, str]
) -> None:
    rig = EngineRig(tmp_path / "rig")
    rig.init_keys()
    rig.start()
    try:
        assert rig.proc is not None
        assert stat.S_IMODE(rig.master_key_file.stat().st_mode) == 0o600
        rig_master = rig.master_key_file.read_text().strip()
        engine = environ_of(rig.proc.pid)
        # The engine is named its two key files (paths, passed explicitly), nothing else.
        paths = frozenset({"YIKATONG_HSM_KEY_FILE", MASTER_KEY_FILE_ENV})
        assert paths <= names_in(engine)
        secrets = {**parent_secrets, "rig master key": rig_master}
        assert_no_secret(engine, secrets, "the rig's engine", passed=paths)
        postmaster = running_postmaster(rig.data_dir)
        assert postmaster is not None
        raw = environ_of(postmaster)
        assert_no_secret(raw, secrets, "its postmaster")
        assert not any(n.startswith("YIKATONG_") for n in names_in(raw))
    finally:
        assert rig.stop() == 0
    assert not rig.database_left_running()
