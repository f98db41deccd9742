"""Replay protection: the nonces seen per terminal within the clock-skew window.

A nonce only needs remembering while its timestamp is still acceptable (`window_s`
either side of now); after that the timestamp check alone refuses it. The store is
bounded: when it is full of unexpired nonces, new requests are refused as overload
rather than letting memory grow. Per process: with several worker processes a replay
could reach another worker within the window; state-changing transactions are still
protected there by msgid idempotency.
"""

from __future__ import annotations

from collections import OrderedDict


class NonceStore:
    def __init__(self, capacity: int, window_s: float) -> None:
        self._capacity = capacity
        self._window_s = window_s
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now_s: float) -> None:
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now_s:
                break
            del self._seen[key]

    def check_and_remember(self, terminal_id: str, nonce: str, now_s: float) -> bool | None:
        """True if new (and now remembered), False if a replay, None if the store is full."""
        self._expire(now_s)
        key = (terminal_id, nonce)
        if key in self._seen:
            return False
        if len(self._seen) >= self._capacity:
            return None
        # Insertion order is expiry order because every entry lives the same time.
        self._seen[key] = now_s + 2 * self._window_s
        return True
