"""The terminal's key file (terminals.keyfile): a legacy hex key still loads; a TR-31
block loads only with the KBPK that made it and only when its header says "HMAC key
for generating MACs"; installing writes the block still wrapped, mode 0600, and
refuses a wrong block without writing; loose modes of either file are refused with
the file's name and mode. Real files, real TR-31 wrapping (hsm.tr31), nothing mocked."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hsm import tr31
from hsm.keys import SecretKey, aes, hmac_key, tdes
from hsm.tr31_header import KeyBlockHeader
from terminals.keyfile import KeyFileError, install_terminal_key, load_terminal_key

KEY = bytes(range(0xA0, 0xC0))  # a 32-byte HMAC-SHA256 terminal key
KBPK = bytes(range(32))
MAC_HEADER = KeyBlockHeader(version="D", key_usage="M7", algorithm="H", mode_of_use="C")


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def block(header: KeyBlockHeader = MAC_HEADER, key: bytes = KEY, kbpk: bytes = KBPK) -> str:
    return tr31.wrap(aes(kbpk), header, hmac_key(key))


@pytest.fixture
def kbpk_file(tmp_path: Path) -> Path:
    return private(tmp_path / "kbpk", KBPK.hex().upper() + "\n")


def test_a_legacy_hex_key_file_still_loads(tmp_path: Path) -> None:
    path = private(tmp_path / "terminal.key", KEY.hex() + "\n")
    assert load_terminal_key(path) == KEY
    assert load_terminal_key(path, tmp_path / "no-kbpk-needed") == KEY


def test_a_key_block_loads_with_its_kbpk(tmp_path: Path, kbpk_file: Path) -> None:
    path = private(tmp_path / "terminal.key", block() + "\n")
    assert load_terminal_key(path, kbpk_file) == KEY
    generate_only = private(
        tmp_path / "g.key",
        block(KeyBlockHeader(version="D", key_usage="M7", algorithm="H", mode_of_use="G")),
    )
    assert load_terminal_key(generate_only, kbpk_file) == KEY


def test_a_key_block_without_its_kbpk_file_is_refused(tmp_path: Path) -> None:
    path = private(tmp_path / "terminal.key", block())
    with pytest.raises(KeyFileError, match="holds a key block: the KBPK file") as refused:
        load_terminal_key(path)
    assert refused.value.path == path


def test_a_key_block_under_another_kbpk_is_refused(tmp_path: Path) -> None:
    path = private(tmp_path / "terminal.key", block())
    wrong = private(tmp_path / "wrong-kbpk", bytes(32).hex())
    with pytest.raises(KeyFileError, match="MAC does not match") as refused:
        load_terminal_key(path, wrong)
    assert str(path) in str(refused.value) and KEY.hex() not in str(refused.value).lower()


@pytest.mark.parametrize(
    ("header", "key", "message"),
    [
        (KeyBlockHeader("D", "D0", "A", "B"), aes(bytes(16)), r"usage D0 \(symmetric data"),
        (KeyBlockHeader("D", "K0", "A", "B"), aes(bytes(16)), "usage K0"),
        (KeyBlockHeader("D", "P0", "T", "E"), tdes(bytes(16)), "usage P0"),
        (KeyBlockHeader("D", "M6", "A", "C"), aes(bytes(16)), "usage M6"),  # CMAC, not HMAC
        (KeyBlockHeader("D", "M7", "H", "V"), hmac_key(KEY), "mode of use V"),
    ],
)
def test_a_block_that_is_not_a_terminal_mac_key_is_refused(
    tmp_path: Path, kbpk_file: Path, header: KeyBlockHeader, key: SecretKey, message: str
) -> None:
    text = tr31.wrap(aes(KBPK), header, key)
    path = private(tmp_path / "terminal.key", text)
    with pytest.raises(KeyFileError, match=message):
        load_terminal_key(path, kbpk_file)
    target = tmp_path / "installed.key"
    with pytest.raises(KeyFileError, match=message):
        install_terminal_key(text, target, kbpk_file)
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o606])
def test_loose_key_files_and_kbpk_files_are_refused_naming_file_and_mode(
    tmp_path: Path, kbpk_file: Path, mode: int
) -> None:
    loose_key = private(tmp_path / "terminal.key", KEY.hex(), mode)
    with pytest.raises(KeyFileError, match=f"terminal key file {loose_key} has mode {mode:04o}"):
        load_terminal_key(loose_key)
    wrapped = private(tmp_path / "wrapped.key", block())
    kbpk_file.chmod(mode)
    with pytest.raises(KeyFileError, match=f"KBPK file {kbpk_file} has mode {mode:04o}"):
        load_terminal_key(wrapped, kbpk_file)
    with pytest.raises(KeyFileError, match=f"KBPK file {kbpk_file} has mode {mode:04o}"):
        install_terminal_key(block(), tmp_path / "new.key", kbpk_file)
    assert not (tmp_path / "new.key").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("abc", "odd number of hex digits"),
        ("00" * 8, "a key of 8 bytes"),
        ("D0112M7HC00N0000ZZ", "key block"),  # framed like a block, but broken
    ],
)
def test_malformed_key_files_are_refused(
    tmp_path: Path, kbpk_file: Path, text: str, message: str
) -> None:
    path = private(tmp_path / "terminal.key", text)
    with pytest.raises(KeyFileError, match=message):
        load_terminal_key(path, kbpk_file)


def test_a_malformed_kbpk_file_is_refused(tmp_path: Path) -> None:
    path = private(tmp_path / "terminal.key", block())
    for text, message in (("xyz", "does not hold a key in hex"), ("00" * 20, "holds 20 bytes")):
        kbpk = private(tmp_path / "kbpk", text)
        with pytest.raises(KeyFileError, match=message):
            load_terminal_key(path, kbpk)


def test_install_writes_the_block_still_wrapped_mode_0600(tmp_path: Path, kbpk_file: Path) -> None:
    target = tmp_path / "agent" / "terminal.key"
    text = block()
    installed = install_terminal_key(text + "\n", target, kbpk_file)
    assert installed.key_bytes == len(KEY) and installed.mode_of_use == "C"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    on_disk = target.read_text()
    assert on_disk.strip() == text
    assert KEY.hex() not in on_disk.lower()  # never in clear
    assert load_terminal_key(target, kbpk_file) == KEY
    # A new key replaces the old one (rotation), atomically, still 0600.
    new_key = bytes(range(32, 64))
    install_terminal_key(block(key=new_key), target, kbpk_file)
    assert load_terminal_key(target, kbpk_file) == new_key
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_install_refuses_a_tampered_block_and_keeps_the_old_key(
    tmp_path: Path, kbpk_file: Path
) -> None:
    target = tmp_path / "terminal.key"
    install_terminal_key(block(), target, kbpk_file)
    before = target.read_bytes()
    good = block(key=bytes(range(40, 72)))
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(KeyFileError, match="MAC does not match"):
        install_terminal_key(tampered, target, kbpk_file)
    assert target.read_bytes() == before
