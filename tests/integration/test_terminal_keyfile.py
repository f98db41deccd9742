"""Key injection end to end, as commands: the terminal's KBPK is imported into the
HSM's key file wrapped (never in clear); `yikatong hsm export --terminal-id` gives the
terminal's derived MAC key as a version D block with a MAC key's header; on the
terminal, `yikatong hsm install-terminal-key` stores it still wrapped, mode 0600, and
`terminals.keyfile.load_terminal_key` unwraps exactly the key the HSM verifies with.
Refused with exit status 4 and nothing written: a block that is not a MAC key, a KBPK
file others may read, a TDES KBPK (HMAC keys travel in version D blocks only)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hsm import tr31
from hsm.keys import aes
from hsm.keystore import KeyStore
from hsm.terminalkeys import derive_terminal_mac_key
from hsm.tr31_header import KeyBlockHeader
from terminals.keyfile import load_terminal_key

MASTER = "6B" * 32
KBPK = bytes(range(0x40, 0x60))  # terminal T001's KBPK, from the key ceremony
TERMINAL = "T001"


def yikatong(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "YIKATONG_HSM_KEY_FILE": str(tmp / "hsm" / "keys.json"),
        "YIKATONG_HSM_MASTER_KEY_FILE": str(tmp / "hsm" / "master.key"),
    }
    return subprocess.run(
        [sys.executable, "-m", "engine", "hsm", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def hsm_dir(tmp_path: Path) -> Path:
    """A key file with the demo keys and terminal T001's KBPK imported wrapped."""
    (tmp_path / "hsm").mkdir()
    master_file = tmp_path / "hsm" / "master.key"
    master_file.write_text(MASTER)
    master_file.chmod(0o600)
    assert yikatong(tmp_path, "init").returncode == 0
    store = KeyStore.load(tmp_path / "hsm" / "keys.json", bytes.fromhex(MASTER))
    kek = aes(store.get("kek.import").material)
    header = KeyBlockHeader(version="D", key_usage="K1", algorithm="A", mode_of_use="B")
    imported = yikatong(
        tmp_path,
        *("import", "--kek", "kek.import", "--label", "kbpk.T001"),
        *("--usage", "key-block-protection", "-"),
        stdin=tr31.wrap(kek, header, aes(KBPK)),
    )
    assert imported.returncode == 0, imported.stderr
    return tmp_path


@pytest.fixture
def terminal_dir(tmp_path: Path) -> Path:
    """The terminal's side: its copy of the KBPK, mode 0600."""
    path = tmp_path / "terminal"
    path.mkdir()
    (path / "kbpk").write_text(KBPK.hex())
    (path / "kbpk").chmod(0o600)
    return path


def test_exported_block_installs_wrapped_and_unwraps_to_the_hsms_key(
    hsm_dir: Path, terminal_dir: Path
) -> None:
    exported = yikatong(hsm_dir, "export", "--kek", "kbpk.T001", "--terminal-id", TERMINAL)
    assert exported.returncode == 0, exported.stderr
    block = exported.stdout.strip()
    assert (block[0], block[5:7], block[7], block[8], block[11]) == ("D", "M7", "H", "C", "N")
    key_file = terminal_dir / "terminal.key"
    installed = yikatong(
        hsm_dir,
        *("install-terminal-key", "--key-file", str(key_file)),
        *("--kbpk-file", str(terminal_dir / "kbpk"), "-"),
        stdin=block,
    )
    assert installed.returncode == 0, installed.stderr
    assert "32-byte terminal MAC key" in installed.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == block  # still wrapped on disk
    store = KeyStore.load(hsm_dir / "hsm" / "keys.json", bytes.fromhex(MASTER))
    expected = derive_terminal_mac_key(aes(store.get("terminal.mac.master").material), TERMINAL)
    assert load_terminal_key(key_file, terminal_dir / "kbpk") == expected.material
    assert expected.material.hex() not in key_file.read_text().lower()
    assert expected.material.hex() not in (exported.stdout + installed.stdout).lower()


def test_a_block_that_is_not_a_mac_key_is_not_installed(hsm_dir: Path, terminal_dir: Path) -> None:
    not_mac = yikatong(hsm_dir, "export", "--kek", "kbpk.T001", "--label", "card.int.3des")
    assert not_mac.returncode == 0, not_mac.stderr
    key_file = terminal_dir / "terminal.key"
    refused = yikatong(
        hsm_dir,
        *("install-terminal-key", "--key-file", str(key_file)),
        *("--kbpk-file", str(terminal_dir / "kbpk"), not_mac.stdout.strip()),
    )
    assert refused.returncode == 4
    assert "usage D0" in refused.stderr and "takes only usage M7" in refused.stderr
    assert not key_file.exists()


def test_a_loose_kbpk_file_is_refused_and_nothing_is_written(
    hsm_dir: Path, terminal_dir: Path
) -> None:
    block = yikatong(hsm_dir, "export", "--kek", "kbpk.T001", "--terminal-id", TERMINAL).stdout
    (terminal_dir / "kbpk").chmod(0o644)
    key_file = terminal_dir / "terminal.key"
    refused = yikatong(
        hsm_dir,
        *("install-terminal-key", "--key-file", str(key_file)),
        *("--kbpk-file", str(terminal_dir / "kbpk"), block.strip()),
    )
    assert refused.returncode == 4
    assert f"KBPK file {terminal_dir / 'kbpk'} has mode 0644" in refused.stderr
    assert not key_file.exists()


def test_a_terminal_key_is_not_exported_under_a_tdes_key(hsm_dir: Path) -> None:
    refused = yikatong(hsm_dir, "export", "--kek", "card.int.3des", "--terminal-id", TERMINAL)
    assert refused.returncode == 4
    assert "only in a version D block, under an AES KBPK" in refused.stderr
    assert refused.stdout == ""


def test_a_loose_master_key_file_stops_every_key_file_command(hsm_dir: Path) -> None:
    (hsm_dir / "hsm" / "master.key").chmod(0o640)
    refused = yikatong(hsm_dir, "list")
    assert refused.returncode == 4
    assert f"master key file {hsm_dir / 'hsm' / 'master.key'} has mode 0640" in refused.stderr
