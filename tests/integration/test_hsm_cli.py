"""`yikatong hsm`: the key file is created, listed, extended and backed up without a
key value ever being printed; a wrong or missing master key, an existing file and a
tampered key block each stop the command with exit status 4 and change nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hsm import tr31
from hsm.ciphers import KcvMethod, kcv
from hsm.keys import aes
from hsm.keystore import KeyStore
from hsm.tr31_header import KeyBlockHeader

MASTER = "11" * 32


def hsm(
    tmp: Path, *args: str, master: str | None = MASTER, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "YIKATONG_HSM_KEY_FILE": str(tmp / "keys.json")}
    if master is not None:
        env["YIKATONG_HSM_MASTER_KEY"] = master
    return subprocess.run(
        [sys.executable, "-m", "engine", "hsm", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_list_and_refusals(tmp_path: Path) -> None:
    new = hsm(tmp_path, "new-master-key", master=None)
    assert new.returncode == 0 and len(new.stdout.strip()) == 64
    created = hsm(tmp_path, "init")
    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout and "card.int.3des" in created.stdout
    store = KeyStore.load(tmp_path / "keys.json", bytes.fromhex(MASTER))
    listing = hsm(tmp_path, "list").stdout
    for e in store.entries():
        assert e.label in listing
        assert e.material.hex() not in listing.lower() and e.material.hex().upper() not in listing
    assert os.stat(tmp_path / "keys.json").st_mode & 0o077 == 0

    again = hsm(tmp_path, "init")
    assert again.returncode == 4 and "exists" in again.stderr
    wrong = hsm(tmp_path, "list", master="22" * 32)
    assert wrong.returncode == 4 and "cannot authenticate key file" in wrong.stderr
    missing = hsm(tmp_path, "list", master=None)
    assert missing.returncode == 4 and "no master key" in missing.stderr


def test_import_and_export_go_through_key_blocks(tmp_path: Path) -> None:
    assert hsm(tmp_path, "init").returncode == 0
    key_file = tmp_path / "keys.json"
    kek = aes(KeyStore.load(key_file, bytes.fromhex(MASTER)).get("kek.import").material)
    new_key = aes(bytes(range(100, 132)))
    header = KeyBlockHeader(version="D", key_usage="M6", algorithm="A", mode_of_use="C")
    block = tr31.wrap(kek, header, new_key)

    tampered = block[:-1] + ("0" if block[-1] != "0" else "1")
    before = key_file.read_bytes()
    refused = hsm(
        tmp_path,
        "import",
        "--kek",
        "kek.import",
        "--label",
        "mac.partner",
        "--usage",
        "partner-mac",
        tampered,
    )
    assert refused.returncode == 4 and "MAC" in refused.stderr
    assert key_file.read_bytes() == before

    imported = hsm(
        tmp_path,
        "import",
        "--kek",
        "kek.import",
        "--label",
        "mac.partner",
        "--usage",
        "partner-mac",
        "-",
        stdin=block,
    )
    assert imported.returncode == 0, imported.stderr
    expected_kcv = kcv(new_key, KcvMethod.CMAC_ZERO_BLOCK).hex().upper()
    assert f"KCV {expected_kcv}" in imported.stdout
    assert "mac.partner" in hsm(tmp_path, "list").stdout

    exported = hsm(tmp_path, "export", "--kek", "kek.import", "--label", "mac.partner")
    assert exported.returncode == 0, exported.stderr
    assert tr31.unwrap(kek, exported.stdout.strip()).key.material == new_key.material
