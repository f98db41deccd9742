"""A small bounded time-to-live cache for reference rows read on every request
(terminal keys, institution levels). Per process; a change in the database is seen
after at most `ttl_s`. Bounded: when full, expired entries go first, then the oldest."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, capacity: int, ttl_s: float) -> None:
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now_s: float) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires <= now_s:
            del self._items[key]
            return None
        return value

    def put(self, key: K, value: V, now_s: float) -> None:
        self._items.pop(key, None)
        while len(self._items) >= self._capacity:
            self._items.popitem(last=False)
        self._items[key] = (now_s + self._ttl_s, value)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)
