"""The software backend's key file: every key of the soft HSM, encrypted and
authenticated under a local master key, so that key material is never on disk in
clear and a tampered or foreign file is refused before any key is used.

File format (JSON, one object):

    {"format": "yikatong-keyfile/1", "nonce": <b64 12 bytes>, "ciphertext": <b64>}

`ciphertext` is AES-256-GCM under the 32-byte master key with the format string as
associated data; the plaintext is the JSON list of entries (label, version, type,
usage, key material, check value). The master key (64 hex digits) comes from a file
(the configured `hsm.master_key_file`, else `YIKATONG_HSM_MASTER_KEY_FILE`) or, for
development, from `YIKATONG_HSM_MASTER_KEY` itself. Writes go to a temporary file
that replaces the old one atomically (mode 0600).

Both files must be private (hsm.secret_guard): a master key file or key file that
group or others may read or write, or that another user owns, is refused with its
path and mode. The key file is first checked for being a key file at all (JSON of
this format, a nonce and a ciphertext), so a wrong file is named as such, then for
its mode, and only then does the master key touch it.

Entries' `repr` never shows key material (STYLE.md §10); only the backend that holds
the store reads `material`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm.secret_guard import PrivateFileError, check_private, read_private_file, write_private_file

FORMAT = "yikatong-keyfile/1"
MASTER_KEY_ENV = "YIKATONG_HSM_MASTER_KEY"
MASTER_KEY_FILE_ENV = "YIKATONG_HSM_MASTER_KEY_FILE"  # = config hsm.master_key_file
MASTER_KEY_BYTES = 32
LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyStoreError(Exception):
    """The key file or master key cannot be used; the message says why, never a key."""


class KeyType(enum.StrEnum):
    tdes2 = "TDES2"  # double-length 3DES, 16 bytes
    tdes3 = "TDES3"  # triple-length 3DES, 24 bytes
    aes128 = "AES128"
    aes256 = "AES256"
    sm4 = "SM4"  # 16 bytes
    hmac = "HMAC"  # HMAC-SHA256 secret, 32 bytes
    ec_p256 = "EC-P256"  # PKCS#8 DER private key

    def material_lengths(self) -> tuple[int, ...]:
        return _LENGTHS[self]


_LENGTHS: dict[KeyType, tuple[int, ...]] = {
    KeyType.tdes2: (16,),
    KeyType.tdes3: (24,),
    KeyType.aes128: (16,),
    KeyType.aes256: (32,),
    KeyType.sm4: (16,),
    KeyType.hmac: (32,),
    KeyType.ec_p256: (),  # variable-length DER
}


@dataclass(frozen=True)
class KeyEntry:
    label: str
    version: int
    key_type: KeyType
    usage: str
    check_value: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not LABEL_RE.match(self.label):
            raise KeyStoreError(f"key label {self.label!r} must match {LABEL_RE.pattern}")
        if self.version < 1:
            raise KeyStoreError(f"key {self.label}: version must be >= 1")
        lengths = self.key_type.material_lengths()
        if lengths and len(self.material) not in lengths:
            raise KeyStoreError(
                f"key {self.label} v{self.version}: {self.key_type} needs {lengths} bytes,"
                f" got {len(self.material)}"
            )


def parse_master_key(text: str, source: str) -> bytes:
    try:
        key = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"master key from {source} is not hexadecimal") from None
    if len(key) != MASTER_KEY_BYTES:
        raise KeyStoreError(
            f"master key from {source} must be {MASTER_KEY_BYTES} bytes (64 hex digits)"
        )
    return key


def read_master_key_file(path: Path) -> bytes:
    """The master key in `path`, a file private to its owner (mode 0600 or 0400)."""
    try:
        raw = read_private_file(path, "master key file")
    except PrivateFileError as exc:
        raise KeyStoreError(str(exc)) from exc
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyStoreError(f"master key from {path} is not hexadecimal") from None
    return parse_master_key(text, str(path))


def load_master_key(env: Mapping[str, str], path: Path | None = None) -> bytes:
    """The master key from `path` if given, else from the file named by
    YIKATONG_HSM_MASTER_KEY_FILE, else from YIKATONG_HSM_MASTER_KEY."""
    if path is None and env.get(MASTER_KEY_FILE_ENV):
        path = Path(env[MASTER_KEY_FILE_ENV])
    if path is not None:
        return read_master_key_file(path)
    if MASTER_KEY_ENV not in env:
        raise KeyStoreError(
            f"no master key: configure a master key file (hsm.master_key_file or"
            f" {MASTER_KEY_FILE_ENV}, mode 0600) or set {MASTER_KEY_ENV}"
        )
    return parse_master_key(env[MASTER_KEY_ENV], MASTER_KEY_ENV)


def new_master_key_hex() -> str:
    return secrets.token_bytes(MASTER_KEY_BYTES).hex()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyStoreError(f"key file: {what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"key file: {what} is not base64") from None


class KeyStore:
    """Keys by (label, version), loaded from and saved to an encrypted file.

    `add` is the only change a store undergoes: an entry is never replaced or removed
    in place (a new key is a new version or a new store, loaded from a new file).
    `generation` counts the changes, so that whoever keeps something derived from the
    keys (hsm.soft's terminal key cache) can tell that it must forget it."""

    def __init__(self, entries: Iterable[KeyEntry] = ()) -> None:
        self._entries: dict[tuple[str, int], KeyEntry] = {}
        self._newest: dict[str, int] = {}  # label -> highest version
        self.generation = 0
        for entry in entries:
            self.add(entry)

    def __repr__(self) -> str:
        return f"KeyStore({len(self._entries)} keys, generation {self.generation})"

    def add(self, entry: KeyEntry) -> None:
        key = (entry.label, entry.version)
        if key in self._entries:
            raise KeyStoreError(f"key {entry.label} v{entry.version} exists already")
        self._entries[key] = entry
        self._newest[entry.label] = max(entry.version, self._newest.get(entry.label, 0))
        self.generation += 1

    def get(self, label: str, version: int | None = None) -> KeyEntry:
        """The given version, or the highest version of `label` when None."""
        if version is None:
            newest = self._newest.get(label)
            if newest is None:
                raise KeyStoreError(f"no key labelled {label!r}")
            version = newest
        try:
            return self._entries[(label, version)]
        except KeyError:
            raise KeyStoreError(f"no key {label!r} version {version}") from None

    def entries(self) -> list[KeyEntry]:
        return [self._entries[k] for k in sorted(self._entries)]

    # -- the file ------------------------------------------------------------------------

    def save(self, path: Path, master_key: bytes) -> None:
        plaintext = json.dumps(
            [
                {
                    "label": e.label,
                    "version": e.version,
                    "type": e.key_type.value,
                    "usage": e.usage,
                    "check_value": e.check_value,
                    "material": _b64(e.material),
                }
                for e in self.entries()
            ]
        ).encode()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(master_key).encrypt(nonce, plaintext, FORMAT.encode())
        document = json.dumps({"format": FORMAT, "nonce": _b64(nonce), "ciphertext": _b64(sealed)})
        write_private_file(path, document.encode())

    @classmethod
    def load(cls, path: Path, master_key: bytes) -> KeyStore:
        try:
            with path.open("rb") as file:
                st = os.fstat(file.fileno())
                raw = file.read()
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {path}: {exc.strerror}") from exc
        try:
            document = json.loads(raw)
        except ValueError:
            raise KeyStoreError(f"key file {path} is not JSON") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise KeyStoreError(f"key file {path} is not a {FORMAT} file")
        nonce = _unb64(document.get("nonce"), "nonce")
        sealed = _unb64(document.get("ciphertext"), "ciphertext")
        if len(nonce) != 12:
            raise KeyStoreError("key file: nonce must be 12 bytes")
        try:
            check_private(path, st, "key file")
        except PrivateFileError as exc:
            raise KeyStoreError(str(exc)) from exc
        try:
            plaintext = AESGCM(master_key).decrypt(nonce, sealed, FORMAT.encode())
        except InvalidTag:
            raise KeyStoreError(
                f"cannot authenticate key file {path}: wrong master key or the file was altered"
            ) from None
        try:
            rows = json.loads(plaintext)
            return cls(
                KeyEntry(
                    label=row["label"],
                    version=int(row["version"]),
                    key_type=KeyType(row["type"]),
                    usage=str(row["usage"]),
                    check_value=str(row["check_value"]),
                    material=_unb64(row["material"], f"material of {row['label']}"),
                )
                for row in rows
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(
                f"key file {path}: malformed entry ({type(exc).__name__})"
            ) from None
