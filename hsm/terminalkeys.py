"""Per-terminal request-signing keys, derived from the terminal MAC master key.

    K_t = AES-256-ECB(master, SHA-256("yikatong/terminal-mac/v1/" || terminal_id))

gives a 32-byte HMAC-SHA256 key per terminal (DESIGN.md §3: X-Yk-Signature). The
engine never stores terminal keys: the HSM derives K_t from the master inside its
boundary (a PKCS#11 token can do the same with AES_ECB_ENCRYPT_DATA into a
generic-secret key). Terminals receive K_t once, at key injection, wrapped in a key
block.

Every request's signature is checked under K_t, so the soft backend keeps derived
keys in a `TerminalKeyCache` (hsm.soft) instead of deriving on every call. Its limits
are the constants below, one place for them: the soft backend takes them as
constructor defaults (tests pass smaller ones), and nothing in the engine overrides
them. Invariants of the cache:
- bounded by construction: at most `capacity` keys; a key is used for at most `ttl_s`
  after its derivation, then derived again (FIFO: the oldest derivation goes first,
  expired keys are swept as new ones arrive, so none stays in memory much past its
  TTL while the cache is in use);
- keyed by (master label, master version, master check value, terminal id): a new
  master version (the newest is used when none is named) or another master gets its
  own entries, and the holder clears the cache whenever its key store changes
  (hsm.keystore's `generation`), so a MAC under a replaced key never verifies;
- nothing about a cached key is reachable from `repr`: it shows counts only, and
  `SecretKey` masks its material anyway (STYLE.md §10).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from hsm.ciphers import encrypt_ecb
from hsm.errors import DataFormatError
from hsm.keys import Algorithm, SecretKey, hmac_key, require

DERIVATION_PREFIX = b"yikatong/terminal-mac/v1/"
TERMINAL_ID_CHARS_MAX = 40

# Sized for every terminal of a large region in one engine process (~0.3 KB each).
TERMINAL_KEY_CACHE_CAPACITY = 4096
# How long a derived key is used before it is derived again. Correctness does not
# depend on it (key changes clear the cache at once); it bounds how long an idle
# terminal's key stays in memory. The PKCS#11 backend's handle TTL is shorter (5 s,
# hsm.pkcs11_keys) because it must notice keys changed by other processes; a soft key
# store never changes behind this process's back.
TERMINAL_KEY_CACHE_TTL_S = 60.0

# (master label, master version, master check value): which master a key came from.
MasterId = tuple[str, int, str]


def derivation_data(terminal_id: str) -> bytes:
    if not terminal_id or len(terminal_id) > TERMINAL_ID_CHARS_MAX or not terminal_id.isascii():
        raise DataFormatError(f"terminal id must be 1..{TERMINAL_ID_CHARS_MAX} ASCII characters")
    return hashlib.sha256(DERIVATION_PREFIX + terminal_id.encode("ascii")).digest()


def derive_terminal_mac_key(master: SecretKey, terminal_id: str) -> SecretKey:
    require(master, Algorithm.AES, operation="terminal MAC key derivation")
    return hmac_key(encrypt_ecb(master, derivation_data(terminal_id)))


class TerminalKeyCache:
    """Derived terminal keys by (master id, terminal id), bounded and expiring (see the
    module docstring). `capacity` 0 turns caching off: every call derives. Not
    thread-safe: its holder runs on one event loop."""

    __slots__ = ("_clock", "_keys", "capacity", "hits", "misses", "ttl_s")

    def __init__(
        self,
        capacity: int = TERMINAL_KEY_CACHE_CAPACITY,
        ttl_s: float = TERMINAL_KEY_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"terminal key cache capacity must be >= 0, got {capacity}")
        if not ttl_s > 0:
            raise ValueError(f"terminal key cache TTL must be > 0 s, got {ttl_s}")
        self.capacity, self.ttl_s, self._clock = capacity, ttl_s, clock
        # Insertion order is derivation order is expiry order.
        self._keys: OrderedDict[tuple[MasterId, str], tuple[float, SecretKey]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return (
            f"TerminalKeyCache({len(self._keys)} of {self.capacity} keys, ttl {self.ttl_s} s,"
            f" {self.hits} hits, {self.misses} misses)"
        )

    def __len__(self) -> int:
        return len(self._keys)

    def key_for(
        self, master_id: MasterId, terminal_id: str, master: Callable[[], SecretKey]
    ) -> SecretKey:
        """The terminal's key: cached, or derived from `master()` (called only on a
        miss, so that the master's type is checked whenever a key is derived)."""
        now = self._clock()
        slot = (master_id, terminal_id)
        found = self._keys.get(slot)
        if found is not None:
            expires_at, key = found
            if now < expires_at:
                self.hits += 1
                return key
            del self._keys[slot]
        self.misses += 1
        key = derive_terminal_mac_key(master(), terminal_id)
        if self.capacity:
            self._sweep(now)
            self._keys[slot] = (now + self.ttl_s, key)
        return key

    def _sweep(self, now: float) -> None:
        """Drop expired keys from the front, then the oldest while full."""
        keys = self._keys
        while keys and next(iter(keys.values()))[0] <= now:
            keys.popitem(last=False)
        while len(keys) >= self.capacity:
            keys.popitem(last=False)

    def clear(self) -> None:
        self._keys.clear()
