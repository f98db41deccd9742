"""The terminal's key file: where a terminal (the card agent, a HIS workstation) keeps
its request-signing key (DESIGN.md §3), and how that key is installed.

A key file holds one of two things:

- a TR-31 / X9.143 key block (version D) wrapping the terminal's HMAC-SHA256 key under
  the terminal's key block protection key (KBPK). This is what `install_terminal_key`
  writes: the key stays wrapped on disk and is unwrapped in memory by
  `load_terminal_key`, which needs the KBPK from its own file. The block is what
  `yikatong hsm export --terminal-id T --kek <KBPK label>` gives, with the header a MAC
  key must carry: usage M7 (HMAC), algorithm H, mode of use C (generate and verify)
  or G (generate);
- the key in hex, the legacy form (`yikatong agent --key-file` before key blocks),
  still accepted: a file made of hex digits only. A MAC key block is never all hex
  (its usage field starts with M), so the two forms cannot be confused.

How the KBPK reaches the terminal (a key ceremony, components under dual control) is
outside this module: it is a file of 32, 48 or 64 hex digits (an AES key; version D
blocks need an AES KBPK), and its copy in the HSM is imported wrapped
(`yikatong hsm import --usage key-block-protection`).

Invariants:
- both files must be private (hsm.secret_guard.read_private_file): a key file or KBPK
  file with any group or other permission, or owned by another user, is refused with
  its path and mode, before its content is used;
- every refusal is a `KeyFileError` naming the file; no message holds key material;
- `install_terminal_key` checks the block completely (authenticates under the KBPK,
  MAC-key header, key length) before it writes anything, and writes it still wrapped,
  atomically, mode 0600: the clear key never touches the disk.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from hsm import tr31
from hsm.errors import HsmError
from hsm.keys import HMAC_KEY_BYTES_MAX, Algorithm, SecretKey, aes
from hsm.secret_guard import PrivateFileError, read_private_file, write_private_file
from hsm.tr31_header import KEY_USAGES

TERMINAL_KEY_BYTES_MIN = 16  # as the agent always required of a hex key
TERMINAL_KEY_BYTES_MAX = HMAC_KEY_BYTES_MAX
MAC_KEY_USAGE = "M7"  # HMAC: the terminal signs requests with HMAC-SHA256
MAC_KEY_ALGORITHM = "H"
MAC_MODES_OF_USE = frozenset("CG")  # generate and verify, or generate only
KBPK_BYTES = (16, 24, 32)
_HEX = frozenset(string.hexdigits)


class KeyFileError(Exception):
    """A terminal key file or KBPK file cannot be used; names the file, never a key."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class InstalledKey:
    """What `install_terminal_key` wrote (no key material: lengths and header only)."""

    path: Path
    key_bytes: int
    key_version: str
    mode_of_use: str


def _read_text(path: Path, what: str) -> str:
    try:
        raw = read_private_file(path, what)
    except PrivateFileError as exc:
        raise KeyFileError(path, str(exc)) from exc
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyFileError(path, f"{what} {path} is not ASCII text") from None


def _is_hex(text: str) -> bool:
    return bool(text) and all(ch in _HEX for ch in text)


def read_kbpk(kbpk_path: Path) -> SecretKey:
    """The AES KBPK in `kbpk_path` (hex, 16/24/32 bytes; private file)."""
    text = _read_text(kbpk_path, "KBPK file")
    if not _is_hex(text) or len(text) % 2:
        raise KeyFileError(kbpk_path, f"KBPK file {kbpk_path} does not hold a key in hex")
    material = bytes.fromhex(text)
    if len(material) not in KBPK_BYTES:
        raise KeyFileError(
            kbpk_path,
            f"KBPK file {kbpk_path} holds {len(material)} bytes; an AES KBPK has 16, 24 or 32",
        )
    return aes(material)


def unwrap_terminal_key(block: str, kbpk: SecretKey, path: Path) -> tr31.UnwrappedKey:
    """Authenticate `block` under `kbpk` and check that it carries a terminal MAC key;
    `path` names the file in messages (the key file, or where the block goes)."""
    try:
        unwrapped = tr31.unwrap(kbpk, block)
    except HsmError as exc:
        raise KeyFileError(path, f"terminal key block for {path}: {exc}") from exc
    header = unwrapped.header
    if header.key_usage != MAC_KEY_USAGE or header.algorithm != MAC_KEY_ALGORITHM:
        usage = KEY_USAGES.get(header.key_usage, "proprietary")
        raise KeyFileError(
            path,
            f"terminal key block for {path} carries a key of usage {header.key_usage}"
            f" ({usage}), algorithm {header.algorithm}: a terminal signs requests with"
            f" HMAC-SHA256 and takes only usage {MAC_KEY_USAGE}, algorithm {MAC_KEY_ALGORITHM}",
        )
    if header.mode_of_use not in MAC_MODES_OF_USE:
        raise KeyFileError(
            path,
            f"terminal key block for {path} has mode of use {header.mode_of_use}: a"
            " terminal must be allowed to generate MACs (C or G)",
        )
    if unwrapped.key.algorithm is not Algorithm.HMAC or not (
        TERMINAL_KEY_BYTES_MIN <= len(unwrapped.key.material) <= TERMINAL_KEY_BYTES_MAX
    ):
        raise KeyFileError(path, f"terminal key block for {path} carries a key of a wrong length")
    return unwrapped


def load_terminal_key(path: Path, kbpk_path: Path | None = None) -> bytes:
    """The terminal's request-signing key from its key file: a TR-31 block unwrapped
    under the KBPK in `kbpk_path` (required for a block), or a legacy hex key."""
    text = _read_text(path, "terminal key file")
    if _is_hex(text):
        if len(text) % 2:
            raise KeyFileError(path, f"terminal key file {path}: odd number of hex digits")
        key = bytes.fromhex(text)
        if not TERMINAL_KEY_BYTES_MIN <= len(key) <= TERMINAL_KEY_BYTES_MAX:
            raise KeyFileError(
                path,
                f"terminal key file {path}: a key of {len(key)} bytes; a terminal key has"
                f" {TERMINAL_KEY_BYTES_MIN}..{TERMINAL_KEY_BYTES_MAX}",
            )
        return key
    if not text:
        raise KeyFileError(path, f"terminal key file {path} is empty")
    if kbpk_path is None:
        raise KeyFileError(
            path,
            f"terminal key file {path} holds a key block: the KBPK file that unwraps it"
            " must be given too",
        )
    return unwrap_terminal_key(text, read_kbpk(kbpk_path), path).key.material


def install_terminal_key(block: str, path: Path, kbpk_path: Path) -> InstalledKey:
    """Check `block` (a terminal MAC key wrapped under the KBPK in `kbpk_path`) and
    write it, still wrapped, to the key file `path` (mode 0600, atomically; an older
    key file there is replaced)."""
    block = block.strip()
    unwrapped = unwrap_terminal_key(block, read_kbpk(kbpk_path), path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, block.encode("ascii") + b"\n")
    except OSError as exc:
        raise KeyFileError(path, f"cannot write terminal key file {path}: {exc.strerror}") from exc
    header = unwrapped.header
    return InstalledKey(path, len(unwrapped.key.material), header.key_version, header.mode_of_use)
