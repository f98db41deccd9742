"""TR-31 / ANSI X9.143 key block headers: the field table, parsing with a check on
every field, and encoding (with the padding optional block when needed).

Header layout (ASCII, X9.143 §6.2):

    pos  len  field
    0    1    key block version ID (B: TDES key derivation binding; D: AES)
    1    4    key block length, decimal, the whole block in characters
    5    2    key usage (e.g. P0 PIN encryption, K0/K1 key encryption, M3 retail MAC)
    7    1    algorithm (A AES, D DEA, E EC, H HMAC, R RSA, S DSA, T TDES)
    8    1    mode of use (B both, C generate+verify, D decrypt, E encrypt, G generate,
              N none, S sign, T sign+decrypt, V verify, X derive, Y variants)
    9    2    key version number ("00" when unused)
    11   1    exportability (E exportable under a trusted key, N never, S sensitive)
    12   2    number of optional blocks, decimal
    14   2    reserved, "00"
    16   ...  optional blocks: ID (2) | length (2 hex, whole block) | data; a length of
              "00" introduces the extended form: length of length (2 hex) | length

Invariants: every field is checked against the table on parse and on construction, a
failure raises `KeyBlockError` naming the field and its position; header text holds no
key material, so messages may quote the few characters of the failing field.
The padding block "PB" is added by `encode` and removed by `parse`; callers never see
or supply it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from hsm.errors import KeyBlockError

HEADER_FIXED_CHARS = 16
OPTIONAL_BLOCKS_MAX = 99
BLOCK_LENGTH_MAX = 9992  # the 4-digit length field, kept a multiple of 8
PAD_BLOCK_ID = "PB"

VERSIONS = {"B": 8, "D": 16}  # version -> cipher block length of the KBPK
KNOWN_UNSUPPORTED_VERSIONS = {"A": "variant binding", "C": "variant binding"}

KEY_USAGES: dict[str, str] = {
    "B0": "base derivation key (BDK)",
    "B1": "initial DUKPT key",
    "B2": "base key variant key",
    "C0": "card verification key",
    "D0": "symmetric data encryption",
    "D1": "asymmetric data encryption",
    "D2": "data encryption for decimalization table",
    "E0": "EMV issuer master key: application cryptograms",
    "E1": "EMV issuer master key: secure messaging confidentiality",
    "E2": "EMV issuer master key: secure messaging integrity",
    "E3": "EMV issuer master key: data authentication code",
    "E4": "EMV issuer master key: dynamic numbers",
    "E5": "EMV issuer master key: card personalization",
    "E6": "EMV issuer master key: other",
    "I0": "initialization vector",
    "K0": "key encryption or wrapping",
    "K1": "TR-31 key block protection key",
    "K2": "TR-34 asymmetric key",
    "K3": "asymmetric key for key agreement or wrapping",
    "M0": "ISO 16609 MAC algorithm 1 (TDEA)",
    "M1": "ISO 9797-1 MAC algorithm 1",
    "M2": "ISO 9797-1 MAC algorithm 2",
    "M3": "ISO 9797-1 MAC algorithm 3",
    "M4": "ISO 9797-1 MAC algorithm 4",
    "M5": "ISO 9797-1:1999 MAC algorithm 5",
    "M6": "ISO 9797-1:2011 MAC algorithm 5 (CMAC)",
    "M7": "HMAC",
    "M8": "ISO 9797-1:2011 MAC algorithm 6",
    "P0": "PIN encryption",
    "S0": "asymmetric key pair for digital signature",
    "S1": "asymmetric key pair, CA use",
    "S2": "asymmetric key pair, non-X9.24 use",
    "V0": "PIN verification, other",
    "V1": "PIN verification, IBM 3624",
    "V2": "PIN verification, VISA PVV",
}
ALGORITHMS: dict[str, str] = {
    "A": "AES",
    "D": "DEA",
    "E": "elliptic curve",
    "H": "HMAC",
    "R": "RSA",
    "S": "DSA",
    "T": "TDES",
}
MODES_OF_USE = frozenset("BCDEGNSTVXY")
EXPORTABILITY = frozenset("ENS")

_ALNUM2 = re.compile(r"[0-9A-Za-z]{2}")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")


def _printable(text: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in text)


@dataclass(frozen=True, slots=True)
class KeyBlockHeader:
    """The clear, authenticated attributes of a key block (without its length, which
    `encode` computes, and without the padding block)."""

    version: str
    key_usage: str
    algorithm: str
    mode_of_use: str
    key_version: str = "00"
    exportability: str = "N"
    optional_blocks: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable of pairs; store tuples so headers compare and hash.
        blocks = tuple(tuple(pair) for pair in self.optional_blocks)
        if any(len(pair) != 2 for pair in blocks):
            raise KeyBlockError("optional blocks must be (ID, data) pairs")
        object.__setattr__(self, "optional_blocks", blocks)
        if self.version not in VERSIONS:
            refuse_version(self.version)
        if not (
            isinstance(self.key_usage, str)
            and _ALNUM2.fullmatch(self.key_usage)
            and (self.key_usage in KEY_USAGES or self.key_usage.isdigit())
        ):
            raise KeyBlockError(
                f"key usage (position 5) {self.key_usage!r} is not defined by ANSI X9.143 "
                "(nor numeric, for proprietary use)"
            )
        if self.algorithm not in ALGORITHMS:
            raise KeyBlockError(f"algorithm (position 7) {self.algorithm!r} is not A/D/E/H/R/S/T")
        if not isinstance(self.mode_of_use, str) or self.mode_of_use not in MODES_OF_USE:
            raise KeyBlockError(
                f"mode of use (position 8) {self.mode_of_use!r} is not one of "
                f"{''.join(sorted(MODES_OF_USE))}"
            )
        if not isinstance(self.key_version, str) or not _ALNUM2.fullmatch(self.key_version):
            raise KeyBlockError(
                f"key version (position 9) {self.key_version!r} is not two letters or digits"
            )
        if not isinstance(self.exportability, str) or self.exportability not in EXPORTABILITY:
            raise KeyBlockError(
                f"exportability (position 11) {self.exportability!r} is not E, N or S"
            )
        if len(self.optional_blocks) > OPTIONAL_BLOCKS_MAX - 1:
            raise KeyBlockError(
                f"{len(self.optional_blocks)} optional blocks; at most "
                f"{OPTIONAL_BLOCKS_MAX - 1} besides the padding block"
            )
        for block_id, data in self.optional_blocks:
            if not isinstance(block_id, str) or not _ALNUM2.fullmatch(block_id):
                raise KeyBlockError(f"optional block ID {block_id!r} is not two letters or digits")
            if block_id == PAD_BLOCK_ID:
                raise KeyBlockError("optional block ID 'PB' is reserved for padding")
            if not isinstance(data, str) or not _printable(data):
                raise KeyBlockError(f"optional block {block_id} data is not printable ASCII")

    @property
    def block_bytes(self) -> int:
        return VERSIONS[self.version]

    def encode(self, body_chars: int) -> str:
        """The header text for a block with `body_chars` characters of encrypted key
        data and MAC after the header; pads optional blocks to the cipher block."""
        blocks = [_encode_optional_block(i, d) for i, d in self.optional_blocks]
        used = HEADER_FIXED_CHARS + sum(len(b) for b in blocks)
        pad = -used % self.block_bytes
        if pad:  # only optional blocks can misalign; a padding block is >= 4 characters
            pad += self.block_bytes if pad < 4 else 0
            blocks.append(f"{PAD_BLOCK_ID}{pad:02X}" + "0" * (pad - 4))
            used += pad
        total = used + body_chars
        if total > BLOCK_LENGTH_MAX:
            raise KeyBlockError(f"key block would be {total} characters; at most 9992")
        return (
            f"{self.version}{total:04d}{self.key_usage}{self.algorithm}{self.mode_of_use}"
            f"{self.key_version}{self.exportability}{len(blocks):02d}00" + "".join(blocks)
        )


def refuse_version(version: object) -> NoReturn:
    """Raise the `KeyBlockError` for a version other than B or D."""
    if isinstance(version, str) and version in KNOWN_UNSUPPORTED_VERSIONS:
        raise KeyBlockError(
            f"key block version {version} ({KNOWN_UNSUPPORTED_VERSIONS[version]}) is not "
            "supported; only B (TDES) and D (AES) key derivation binding"
        )
    raise KeyBlockError(f"key block version (position 0) {version!r} is not B or D")


def _encode_optional_block(block_id: str, data: str) -> str:
    length = 4 + len(data)
    if length <= 0xFF:
        return f"{block_id}{length:02X}{data}"
    # Extended form: ID, "00", length of length "02" (bytes), then 4 hex digits.
    length = 10 + len(data)
    if length > 0xFFFF:
        raise KeyBlockError(f"optional block {block_id} is too long ({len(data)} characters)")
    return f"{block_id}0002{length:04X}{data}"


def parse_header(text: str) -> tuple[KeyBlockHeader, int]:
    """Parse and check the header at the start of a key block; return it and the
    header length in characters (including optional and padding blocks)."""
    if len(text) < HEADER_FIXED_CHARS:
        raise KeyBlockError(f"key block is {len(text)} characters, shorter than its header")
    if text[0] not in VERSIONS:
        refuse_version(text[0])
    count_field, reserved = text[12:14], text[14:16]
    if not _DIGITS.fullmatch(count_field):
        raise KeyBlockError(
            f"number of optional blocks (position 12) {count_field!r} is not 2 digits"
        )
    if reserved != "00":
        raise KeyBlockError(f"reserved field (position 14) is {reserved!r}, not '00'")
    blocks, pos = _parse_optional_blocks(text, int(count_field))
    padded = [(i, d) for i, d in blocks if i == PAD_BLOCK_ID]
    if len(padded) > 1 or (padded and blocks[-1][0] != PAD_BLOCK_ID):
        raise KeyBlockError("padding block PB must be the last optional block, and only one")
    header = KeyBlockHeader(
        version=text[0],
        key_usage=text[5:7],
        algorithm=text[7],
        mode_of_use=text[8],
        key_version=text[9:11],
        exportability=text[11],
        optional_blocks=tuple((i, d) for i, d in blocks if i != PAD_BLOCK_ID),
    )
    if pos % header.block_bytes:
        raise KeyBlockError(
            f"header is {pos} characters, not a multiple of the {header.block_bytes}-byte "
            "cipher block (padding block missing or wrong)"
        )
    return header, pos


def _parse_optional_blocks(text: str, count: int) -> tuple[list[tuple[str, str]], int]:
    blocks: list[tuple[str, str]] = []
    pos = HEADER_FIXED_CHARS
    for n in range(1, count + 1):
        block_id = text[pos : pos + 2]
        where = f"optional block {n} of {count} (position {pos})"
        if not _ALNUM2.fullmatch(block_id):
            raise KeyBlockError(f"{where}: ID {block_id!r} is not two letters or digits")
        length_field = text[pos + 2 : pos + 4]
        if not _HEX.fullmatch(length_field):
            raise KeyBlockError(f"{where} {block_id}: length {length_field!r} is not 2 hex digits")
        length, header_chars = int(length_field, 16), 4
        if length == 0:  # extended length: length of length, then the length
            lol_field = text[pos + 4 : pos + 6]
            if not _HEX.fullmatch(lol_field) or int(lol_field, 16) == 0:
                raise KeyBlockError(
                    f"{where} {block_id}: extended length-of-length {lol_field!r} is invalid"
                )
            digits = 2 * int(lol_field, 16)  # the length of length counts bytes
            ext = text[pos + 6 : pos + 6 + digits]
            if len(ext) != digits or not _HEX.fullmatch(ext):
                raise KeyBlockError(
                    f"{where} {block_id}: extended length {ext!r} is not {digits} hex digits"
                )
            length, header_chars = int(ext, 16), 6 + digits
        if length < header_chars or pos + length > len(text):
            raise KeyBlockError(
                f"{where} {block_id}: length {length} does not fit the block "
                f"(needs {header_chars}..{len(text) - pos})"
            )
        data = text[pos + header_chars : pos + length]
        if not _printable(data):
            raise KeyBlockError(f"{where} {block_id}: data is not printable ASCII")
        blocks.append((block_id, data))
        pos += length
    return blocks, pos
