"""Secrets stay out of children and out of loose files (hsm.secret_guard): the one
secret set names what no child inherits; `child_env` drops it (and our settings)
whatever the parent holds; the engine's `open_hsm` leaves no HSM secret in its
environment for later children; a master key file or key file that group or others
may read or write is refused with its path and mode. Real files, real processes."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import HsmConfig
from engine.hsm_runtime import ENVIRON_SECRETS, HsmSetupError, open_hsm
from hsm.keystore import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    KeyEntry,
    KeyStore,
    KeyStoreError,
    KeyType,
    load_master_key,
)
from hsm.secret_guard import (
    PrivateFileError,
    child_env,
    drop_from_environ,
    is_secret_name,
    read_private_file,
    write_private_file,
)

MASTER_HEX = "3C" * 32
ENTRY = KeyEntry("k.aes", 1, KeyType.aes128, "test", "", bytes(range(16)))

SECRET_NAMES = [
    "YIKATONG_HSM_MASTER_KEY",
    "YIKATONG_HSM_PKCS11_PIN",
    "YIKATONG_HSM_KEY_FILE",
    "YIKATONG_HSM_MASTER_KEY_FILE",
    "CARD_PIN",
    "AGENT_MASTER_KEY",
    "APP_SECRET",
    "aws_secret_access_key",
    "GITHUB_TOKEN",
    "DB_PASSWORD",
    "PGPASSWORD",
    "PGPASSFILE",
    "SSH_AUTH_SOCK",
    "DATABASE_URL",
    "SENTRY_DSN",
    "PARTNER_API_KEY",
    "TLS_PRIVATE_KEY",
]
PLAIN_NAMES = ["PATH", "HOME", "LANG", "TZ", "XDG_RUNTIME_DIR", "PYTHONPATH", "PINNED_VERSION"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_the_secret_set_names_hsm_settings_pins_keys_passwords_and_dsns(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_variables_are_not_secrets(name: str) -> None:
    assert not is_secret_name(name)


def test_child_env_drops_every_secret_and_our_settings_and_adds_only_what_is_named() -> None:
    parent = {name: f"value-of-{name}" for name in SECRET_NAMES + PLAIN_NAMES}
    parent["YIKATONG_SERVER_PORT"] = "8080"
    env = child_env(parent)
    assert set(env) == set(PLAIN_NAMES)
    assert "YIKATONG_SERVER_PORT" in child_env(parent, keep_ours=True)
    assert not any(is_secret_name(n) for n in child_env(parent, keep_ours=True))
    named = child_env(parent, extra={"YIKATONG_HSM_KEY_FILE": "/k.json"})
    assert named["YIKATONG_HSM_KEY_FILE"] == "/k.json"  # passed explicitly, by name
    assert "YIKATONG_HSM_MASTER_KEY" not in named


def test_a_variable_dropped_from_environ_reaches_no_later_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the C environment fork/exec copy, not only os.environ's dict."""
    monkeypatch.setenv("YIKATONG_HSM_MASTER_KEY", MASTER_HEX)
    probe = [sys.executable, "-c", "import os; print(os.environ.get('YIKATONG_HSM_MASTER_KEY'))"]
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == MASTER_HEX
    drop_from_environ(["YIKATONG_HSM_MASTER_KEY"])
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "None"
    env_child = subprocess.run(["/usr/bin/env"], capture_output=True, text=True).stdout
    assert MASTER_HEX not in env_child


async def test_open_hsm_leaves_no_hsm_secret_in_the_engines_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys.json"
    KeyStore([ENTRY]).save(key_file, bytes.fromhex(MASTER_HEX))
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER_HEX)
    monkeypatch.setenv("YIKATONG_HSM_PKCS11_PIN", "246810")
    hsm = await open_hsm(HsmConfig(key_file=str(key_file)))
    try:
        assert len(await hsm.random_bytes(8, deadline_s=1)) == 8  # opened with the key
    finally:
        await hsm.close()
    assert not any(name in os.environ for name in ENVIRON_SECRETS)
    child = await asyncio.create_subprocess_exec("/usr/bin/env", stdout=asyncio.subprocess.PIPE)
    env_child = (await child.communicate())[0].decode()
    assert MASTER_HEX not in env_child and "246810" not in env_child


async def test_open_hsm_drops_the_secrets_even_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER_HEX)
    with pytest.raises(HsmSetupError, match="cannot read key file"):
        await open_hsm(HsmConfig(key_file=str(tmp_path / "missing.json")))
    assert MASTER_KEY_ENV not in os.environ


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o610])
def test_a_master_key_file_open_to_group_or_others_is_refused_naming_file_and_mode(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_HEX)
    path.chmod(mode)
    with pytest.raises(KeyStoreError) as refused:
        load_master_key({}, path)
    assert str(path) in str(refused.value) and f"mode {mode:04o}" in str(refused.value)
    assert "chmod 600" in str(refused.value) and MASTER_HEX not in str(refused.value)
    # Named by the environment instead of the configuration: the same refusal.
    with pytest.raises(KeyStoreError, match=f"mode {mode:04o}"):
        load_master_key({MASTER_KEY_FILE_ENV: str(path), MASTER_KEY_ENV: MASTER_HEX})


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_master_key_file_is_read_and_wins_over_the_variable(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_HEX + "\n")
    path.chmod(mode)
    assert load_master_key({}, path) == bytes.fromhex(MASTER_HEX)
    env = {MASTER_KEY_FILE_ENV: str(path), MASTER_KEY_ENV: "00" * 32}
    assert load_master_key(env) == bytes.fromhex(MASTER_HEX)


def test_a_key_file_open_to_group_or_others_is_refused_before_the_master_key_is_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    KeyStore([ENTRY]).save(path, bytes.fromhex(MASTER_HEX))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyStore.load(path, bytes.fromhex(MASTER_HEX)).entries() == [ENTRY]
    for mode in (0o644, 0o660):
        path.chmod(mode)
        with pytest.raises(KeyStoreError, match=f"key file {path} has mode {mode:04o}"):
            KeyStore.load(path, bytes.fromhex(MASTER_HEX))
        # Refused before decryption: a wrong master key gets the same answer.
        with pytest.raises(KeyStoreError, match=f"mode {mode:04o}"):
            KeyStore.load(path, bytes(32))


def test_saving_over_a_loose_leftover_still_gives_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    leftover = path.with_name("keys.json.tmp")
    leftover.write_text("half a file")
    leftover.chmod(0o666)
    KeyStore([ENTRY]).save(path, bytes.fromhex(MASTER_HEX))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_private_file(tmp_path / "other", b"x")
    assert stat.S_IMODE((tmp_path / "other").stat().st_mode) == 0o600


def test_read_private_file_refuses_what_is_not_a_regular_private_file(tmp_path: Path) -> None:
    with pytest.raises(PrivateFileError, match="is not a regular file"):
        read_private_file(tmp_path, "key file")
    with pytest.raises(PrivateFileError, match="cannot read key file"):
        read_private_file(tmp_path / "absent", "key file")
    (tmp_path / "big").write_bytes(b"0" * ((1 << 20) + 1))
    (tmp_path / "big").chmod(0o600)
    with pytest.raises(PrivateFileError, match="larger than"):
        read_private_file(tmp_path / "big", "key file")


def test_read_private_file_refuses_a_file_another_user_owns(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user (chown)")
    path = tmp_path / "master.key"
    path.write_text(MASTER_HEX)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(PrivateFileError, match="belongs to uid 65534"):
        read_private_file(path, "master key file")
