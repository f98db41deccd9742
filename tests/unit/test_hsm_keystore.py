"""The soft HSM's key file: keys only on disk encrypted, and a file that cannot be
authenticated (wrong master key, altered bytes) refused before any key is used."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from hsm.keystore import (
    MASTER_KEY_ENV,
    KeyEntry,
    KeyStore,
    KeyStoreError,
    KeyType,
    load_master_key,
    new_master_key_hex,
)

MASTER = bytes(range(32))
IMK = KeyEntry("card.imk.3des", 1, KeyType.tdes2, "card-auth", "A1B2C3", bytes(range(16)))
SM4 = KeyEntry("card.imk.sm4", 1, KeyType.sm4, "card-auth", "D4E5F6", bytes(range(16, 32)))


def saved(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    KeyStore([IMK, SM4]).save(path, MASTER)
    return path


def test_round_trip_and_nothing_in_clear(tmp_path: Path) -> None:
    path = saved(tmp_path)
    assert KeyStore.load(path, MASTER).entries() == [IMK, SM4]
    raw = path.read_bytes()
    assert bytes(range(16)) not in raw and base64.b64encode(bytes(range(16))) not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wrong_master_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot authenticate key file"):
        KeyStore.load(saved(tmp_path), bytes(32))


def test_altered_file_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    doc = json.loads(path.read_text())
    sealed = bytearray(base64.b64decode(doc["ciphertext"]))
    sealed[5] ^= 0x01
    doc["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError, match="file was altered"):
        KeyStore.load(path, MASTER)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('{"format": "other/1"}', "is not a yikatong-keyfile/1 file"),
        (
            '{"format": "yikatong-keyfile/1", "nonce": "!!", "ciphertext": ""}',
            "nonce is not base64",
        ),
        (
            '{"format": "yikatong-keyfile/1", "nonce": "AAAA", "ciphertext": ""}',
            "nonce must be 12 bytes",
        ),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyStoreError, match=message):
        KeyStore.load(path, MASTER)


def test_key_lengths_and_labels_are_checked() -> None:
    with pytest.raises(KeyStoreError, match="TDES2 needs"):
        KeyEntry("k", 1, KeyType.tdes2, "x", "", bytes(8))
    with pytest.raises(KeyStoreError, match="must match"):
        KeyEntry("bad label", 1, KeyType.aes128, "x", "", bytes(16))
    with pytest.raises(KeyStoreError, match="version must be >= 1"):
        KeyEntry("k", 0, KeyType.aes128, "x", "", bytes(16))


def test_versions_and_lookups() -> None:
    v2 = KeyEntry("card.imk.3des", 2, KeyType.tdes2, "card-auth", "", bytes(16))
    store = KeyStore([IMK, v2])
    assert store.get("card.imk.3des") is v2
    assert store.get("card.imk.3des", 1) is IMK
    with pytest.raises(KeyStoreError, match=r"no key 'card\.imk\.3des' version 3"):
        store.get("card.imk.3des", 3)
    with pytest.raises(KeyStoreError, match="exists already"):
        store.add(IMK)


def test_key_material_never_in_repr() -> None:
    assert "material" not in repr(IMK) and repr(bytes(range(16))) not in repr(IMK)


def test_master_key_sources(tmp_path: Path) -> None:
    hex_key = new_master_key_hex()
    assert load_master_key({MASTER_KEY_ENV: hex_key}) == bytes.fromhex(hex_key)
    key_file = tmp_path / "master"
    key_file.write_text(hex_key + "\n")
    key_file.chmod(0o644)
    with pytest.raises(KeyStoreError, match="group or others"):  # readable by others: refused
        load_master_key({}, key_file)
    key_file.chmod(0o600)
    assert load_master_key({}, key_file) == bytes.fromhex(hex_key)
    with pytest.raises(KeyStoreError, match="no master key"):
        load_master_key({})
    with pytest.raises(KeyStoreError, match="not hexadecimal"):
        load_master_key({MASTER_KEY_ENV: "xyz"})
    with pytest.raises(KeyStoreError, match="must be 32 bytes"):
        load_master_key({MASTER_KEY_ENV: "00" * 16})
