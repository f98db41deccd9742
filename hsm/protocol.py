"""`hsm.Hsm`: the asynchronous protocol every HSM backend implements (DESIGN.md §5).

Callers name keys by label (and optionally version, else the newest) and never see
key material. Every operation takes a deadline. Input problems raise the precise
`hsm.errors` classes (wrong key type, wrong lengths, bad PIN block); a failed
comparison is a `False` from the verify operations, never an exception; an HSM that
cannot answer raises `HsmUnavailable` (operating error: retry or fail over); a key
or algorithm the HSM is not set up for raises an `HsmMisconfigured` class
(`KeyNotFound`, `KeyTypeError`, ...), which no retry clears (hsm.errors).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

# Defined with the other classes in hsm.errors; importable from here as before.
from hsm.errors import HsmMisconfigured as HsmMisconfigured
from hsm.errors import HsmUnavailable as HsmUnavailable
from hsm.errors import KeyNotFound as KeyNotFound


@dataclass(frozen=True)
class KeyRef:
    label: str
    version: int | None = None  # None: the newest version

    def __str__(self) -> str:
        return self.label if self.version is None else f"{self.label} v{self.version}"


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never its value."""

    label: str
    version: int
    key_type: str
    usage: str
    check_value: str


class MacAlgorithm(enum.StrEnum):
    hmac_sha256 = "HMAC-SHA256"
    iso9797_alg3 = "ISO9797-1-ALG3"  # retail MAC, double-length 3DES, padding method 2
    aes_cmac = "AES-CMAC"
    tdes_cmac = "TDES-CMAC"


class Hsm(Protocol):
    backend: str

    async def random_bytes(self, n: int, *, deadline_s: float) -> bytes: ...

    async def verify_card_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        cryptogram: bytes,
        *,
        deadline_s: float,
    ) -> bool:
        """INTERNAL AUTHENTICATE check: the card key is diversified from `master` by
        the card serial inside the HSM (hsm.cardauth)."""
        ...

    async def external_auth_cryptogram(
        self,
        master: KeyRef,
        card_sn: bytes,
        process_factor: bytes,
        challenge: bytes,
        *,
        deadline_s: float,
    ) -> bytes: ...

    async def mac_generate(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, *, deadline_s: float
    ) -> bytes: ...

    async def mac_verify(
        self, key: KeyRef, algorithm: MacAlgorithm, data: bytes, mac: bytes, *, deadline_s: float
    ) -> bool: ...

    async def verify_terminal_mac(
        self, master: KeyRef, terminal_id: str, message: bytes, mac: bytes, *, deadline_s: float
    ) -> bool:
        """HMAC-SHA256 check under the terminal's key, derived from `master` inside the
        HSM (hsm.terminalkeys)."""
        ...

    async def verify_arqc(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        data: bytes,
        arqc: bytes,
        *,
        deadline_s: float,
    ) -> bool: ...

    async def arpc_method_1(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        arc: bytes,
        *,
        deadline_s: float,
    ) -> bytes: ...

    async def arpc_method_2(
        self,
        issuer_master: KeyRef,
        pan: str,
        psn: str,
        atc: bytes,
        arqc: bytes,
        csu: bytes,
        proprietary_data: bytes,
        *,
        deadline_s: float,
    ) -> bytes: ...

    async def translate_pin_format4(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes:
        """ISO 9564 format 4 (AES) PIN block from one AES PIN key to another."""
        ...

    async def translate_pin_format0(
        self, from_key: KeyRef, to_key: KeyRef, block: bytes, pan: str, *, deadline_s: float
    ) -> bytes: ...

    async def sign(self, key: KeyRef, data: bytes, *, deadline_s: float) -> bytes:
        """ECDSA P-256 with SHA-256, DER-encoded signature."""
        ...

    async def verify_signature(
        self, key: KeyRef, data: bytes, signature: bytes, *, deadline_s: float
    ) -> bool: ...

    async def list_keys(self, *, deadline_s: float) -> list[KeyInfo]: ...

    async def close(self) -> None: ...
