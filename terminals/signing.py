"""Request signing for terminals (DESIGN.md §3).

A request carries four headers:

    X-Yk-Terminal   the terminal id
    X-Yk-Timestamp  unix seconds when it was signed
    X-Yk-Nonce      16-64 characters [A-Za-z0-9_-], never reused by that terminal
    X-Yk-Signature  hex HMAC-SHA256 under the terminal's key of
                    METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))
                    (hex digits in either case; `signed_headers` writes lower case)

The client SDK signs with `signed_headers`; the engine checks with `verify` (constant
time) before it decodes anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

HEADER_TERMINAL = "X-Yk-Terminal"
HEADER_TIMESTAMP = "X-Yk-Timestamp"
HEADER_NONCE = "X-Yk-Nonce"
HEADER_SIGNATURE = "X-Yk-Signature"

NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
TERMINAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
# Hex is case-insensitive (RFC 4648 §8); the engine compares the decoded bytes.
SIGNATURE_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, digest)).encode("ascii")


def signature(key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = canonical(method, path, timestamp, nonce, body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def signed_headers(
    terminal_id: str, key: bytes, method: str, path: str, body: bytes, *, now_s: int, nonce: str
) -> dict[str, str]:
    timestamp = str(now_s)
    return {
        HEADER_TERMINAL: terminal_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(key, method, path, timestamp, nonce, body),
    }


def verify(
    key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes, sig_hex: str
) -> bool:
    expected = signature(key, method, path, timestamp, nonce, body)
    return hmac.compare_digest(expected, sig_hex.lower())
