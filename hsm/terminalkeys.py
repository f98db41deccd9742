"""Per-terminal request-signing keys, derived from the terminal MAC master key.

    K_t = AES-256-ECB(master, SHA-256("yikatong/terminal-mac/v1/" || terminal_id))

gives a 32-byte HMAC-SHA256 key per terminal (DESIGN.md §3: X-Yk-Signature). The
engine never stores terminal keys: the HSM derives K_t from the master inside its
boundary for each verification (a PKCS#11 token can do the same with
AES_ECB_ENCRYPT_DATA into a generic-secret key). Terminals receive K_t once, at key
injection, wrapped in a key block.
"""

from __future__ import annotations

import hashlib

from hsm.ciphers import encrypt_ecb
from hsm.errors import DataFormatError
from hsm.keys import Algorithm, SecretKey, hmac_key, require

DERIVATION_PREFIX = b"yikatong/terminal-mac/v1/"
TERMINAL_ID_CHARS_MAX = 40


def derivation_data(terminal_id: str) -> bytes:
    if not terminal_id or len(terminal_id) > TERMINAL_ID_CHARS_MAX or not terminal_id.isascii():
        raise DataFormatError(f"terminal id must be 1..{TERMINAL_ID_CHARS_MAX} ASCII characters")
    return hashlib.sha256(DERIVATION_PREFIX + terminal_id.encode("ascii")).digest()


def derive_terminal_mac_key(master: SecretKey, terminal_id: str) -> SecretKey:
    require(master, Algorithm.AES, operation="terminal MAC key derivation")
    return hmac_key(encrypt_ecb(master, derivation_data(terminal_id)))
