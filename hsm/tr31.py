"""TR-31 / ANSI X9.143 key blocks, versions "B" (TDES KBPK) and "D" (AES KBPK): wrap
a key for export/import and unwrap (authenticate, then decrypt) a received block.

Both versions use the key derivation binding method (X9.143 §6.3, TR-31:2018 §5.3.2):
- from the key block protection key (KBPK) derive a key block encryption key (KBEK)
  and a key block MAC key (KBMK) with CMAC as a counter-mode KDF (SP 800-108); the
  8-byte KDF input is counter | usage (0000 encryption, 0001 MAC) | 00 | algorithm
  (0000 2-key TDES, 0001 3-key TDES, 0002/0003/0004 AES-128/192/256) | key bits;
- payload = 2-byte key length in bits | key | random padding to whole cipher blocks
  (optionally more, to hide the key length);
- MAC = CMAC(KBMK, header ASCII | clear payload), all 8 (B) or 16 (D) bytes;
- encrypted key data = CBC(KBEK, IV = MAC, payload);
- key block = header | hex(encrypted key data) | hex(MAC), upper-case hex.

Invariants:
- `unwrap` checks, in this order, the characters, the version against the KBPK type,
  the length field, every header field, hex and block alignment, then the MAC in
  constant time, and only then looks at the decrypted payload; every failure is a
  `KeyBlockError` naming the part (a wrong KBPK type is a `KeyTypeError`); no
  message contains key material or the MAC, and header messages quote at most the
  few characters of the field that failed;
- `wrap` refuses a key whose algorithm does not match the header's algorithm or is
  stronger than the KBPK;
- randomness (the padding) is injected through `random_bytes`, so KATs can replay.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from hsm.ciphers import decrypt_cbc, encrypt_cbc
from hsm.errors import DataLengthError, KeyBlockError, KeyLengthError, KeyTypeError
from hsm.keys import Algorithm, SecretKey, allowed_lengths, require, with_article
from hsm.mac import cmac
from hsm.tr31_header import (
    HEADER_FIXED_CHARS,
    VERSIONS,
    KeyBlockHeader,
    parse_header,
    refuse_version,
)

_KBPK_ALGORITHM = {"B": Algorithm.TDES, "D": Algorithm.AES}
_KEY_ALGORITHM = {"T": Algorithm.TDES, "A": Algorithm.AES, "H": Algorithm.HMAC, "D": Algorithm.DES}
_WRAPPABLE = {"B": (Algorithm.TDES,), "D": (Algorithm.TDES, Algorithm.AES, Algorithm.HMAC)}
_KDF_ALGORITHM = {
    (Algorithm.TDES, 16): 0x0000,
    (Algorithm.TDES, 24): 0x0001,
    (Algorithm.AES, 16): 0x0002,
    (Algorithm.AES, 24): 0x0003,
    (Algorithm.AES, 32): 0x0004,
}
MASKED_KEY_BYTES_MAX = 64
_USAGE_ENCRYPTION_CBC = 0x0000
_USAGE_MAC = 0x0001
_UPPER_HEX = re.compile(r"[0-9A-F]*")


@dataclass(frozen=True, slots=True)
class UnwrappedKey:
    """An authenticated key block's header and the key it carried (repr is safe: the
    key's repr shows algorithm and length only)."""

    header: KeyBlockHeader
    key: SecretKey


def derive_block_keys(kbpk: SecretKey) -> tuple[SecretKey, SecretKey]:
    """(KBEK, KBMK) from a TDES (version B) or AES (version D) KBPK."""
    require(kbpk, Algorithm.TDES, Algorithm.AES, operation="key block key derivation")
    size = len(kbpk.material)
    algorithm_id = _KDF_ALGORITHM[(kbpk.algorithm, size)]

    def derive(usage: int) -> SecretKey:
        out = b""
        counter = 1
        while len(out) < size:
            data = bytes([counter]) + usage.to_bytes(2, "big") + b"\x00"
            data += algorithm_id.to_bytes(2, "big") + (size * 8).to_bytes(2, "big")
            out += cmac(kbpk, data)
            counter += 1
        return SecretKey(kbpk.algorithm, out[:size])

    return derive(_USAGE_ENCRYPTION_CBC), derive(_USAGE_MAC)


def _check_kbpk(kbpk: SecretKey, version: str) -> None:
    wanted = _KBPK_ALGORITHM[version]
    if not isinstance(kbpk, SecretKey) or kbpk.algorithm is not wanted:
        got = kbpk.algorithm if isinstance(kbpk, SecretKey) else type(kbpk).__name__
        raise KeyTypeError(
            f"a version {version} key block needs {with_article(wanted)} KBPK, got {got}"
        )


def wrap(
    kbpk: SecretKey,
    header: KeyBlockHeader,
    key: SecretKey,
    *,
    masked_key_bytes: int | None = None,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> str:
    """The key block (ASCII text) carrying `key` under `kbpk` with `header`.

    `masked_key_bytes` pads the payload as if the key were that long, so that the
    block does not reveal the key's length (X9.143 key length obfuscation)."""
    _check_kbpk(kbpk, header.version)
    require(key, *_WRAPPABLE[header.version], operation=f"version {header.version} key block")
    if _KEY_ALGORITHM.get(header.algorithm) is not key.algorithm:
        raise KeyTypeError(
            f"header algorithm {header.algorithm!r} does not match the {key.algorithm} key"
        )
    if key.algorithm is not Algorithm.HMAC and len(key.material) > len(kbpk.material):
        raise KeyLengthError(
            f"a {len(key.material)}-byte key cannot be wrapped under a weaker "
            f"{len(kbpk.material)}-byte KBPK"
        )
    if masked_key_bytes is not None and not 0 <= masked_key_bytes <= MASKED_KEY_BYTES_MAX:
        raise DataLengthError(
            f"masked key length must be 0..{MASKED_KEY_BYTES_MAX} bytes, got {masked_key_bytes}"
        )
    block = header.block_bytes
    hidden = max(len(key.material), masked_key_bytes or 0)
    pad_len = -(2 + hidden) % block + (hidden - len(key.material))
    padding = random_bytes(pad_len)
    if not isinstance(padding, bytes) or len(padding) != pad_len:
        raise DataLengthError(f"random_bytes returned the wrong length (asked {pad_len})")
    payload = (len(key.material) * 8).to_bytes(2, "big") + key.material + padding
    mac_len = block
    text_header = header.encode(body_chars=2 * (len(payload) + mac_len))
    kbek, kbmk = derive_block_keys(kbpk)
    mac = cmac(kbmk, text_header.encode("ascii") + payload)
    encrypted = encrypt_cbc(kbek, mac, payload)
    return text_header + encrypted.hex().upper() + mac.hex().upper()


def unwrap(kbpk: SecretKey, key_block: str) -> UnwrappedKey:
    """Authenticate and decrypt a version B or D key block."""
    if not isinstance(key_block, str) or not key_block.isascii() or not key_block.isprintable():
        raise KeyBlockError("key block must be printable ASCII text")
    if len(key_block) < HEADER_FIXED_CHARS:
        raise KeyBlockError(f"key block is {len(key_block)} characters, shorter than its header")
    version = key_block[0]
    if version not in VERSIONS:
        refuse_version(version)
    _check_kbpk(kbpk, version)
    length_field = key_block[1:5]
    if not length_field.isdigit():
        raise KeyBlockError(f"key block length field (position 1) {length_field!r} is not 4 digits")
    if int(length_field) != len(key_block):
        raise KeyBlockError(
            f"key block length field says {int(length_field)} characters, the block has "
            f"{len(key_block)} (truncated or extended)"
        )
    header, header_len = parse_header(key_block)
    block = header.block_bytes
    body = key_block[header_len:]
    mac_hex, data_hex = body[-2 * block :], body[: -2 * block]
    if len(body) < 4 * block or len(data_hex) % (2 * block):
        raise KeyBlockError(
            f"encrypted key data and MAC are {len(body)} characters; need whole "
            f"{block}-byte blocks of key data and a {block}-byte MAC"
        )
    if not _UPPER_HEX.fullmatch(data_hex):
        raise KeyBlockError("encrypted key data is not upper-case hexadecimal")
    if not _UPPER_HEX.fullmatch(mac_hex):
        raise KeyBlockError("MAC field is not upper-case hexadecimal")
    mac = bytes.fromhex(mac_hex)
    kbek, kbmk = derive_block_keys(kbpk)
    payload = decrypt_cbc(kbek, mac, bytes.fromhex(data_hex))
    computed = cmac(kbmk, key_block[:header_len].encode("ascii") + payload)
    if not secrets.compare_digest(computed, mac):
        raise KeyBlockError(
            "key block MAC does not match: the header, key data or MAC was altered, "
            "or the KBPK is not the one the block was made with"
        )
    return UnwrappedKey(header, _key_from_payload(header, payload))


def _key_from_payload(header: KeyBlockHeader, payload: bytes) -> SecretKey:
    """The key inside an authenticated payload (its length field is trusted only as
    far as the MAC and these checks go)."""
    algorithm = _KEY_ALGORITHM.get(header.algorithm)
    if algorithm is None:
        raise KeyBlockError(
            f"algorithm {header.algorithm!r} keys (asymmetric) are not supported by this HSM"
        )
    bits = int.from_bytes(payload[:2], "big")
    if bits % 8 or bits // 8 > len(payload) - 2:
        raise KeyBlockError(
            f"key length field ({bits} bits) does not fit the {len(payload) - 2}-byte payload"
        )
    material = payload[2 : 2 + bits // 8]
    if len(material) not in allowed_lengths(algorithm):
        raise KeyBlockError(f"key length field ({bits} bits) is not a valid {algorithm} key length")
    return SecretKey(algorithm, material)
