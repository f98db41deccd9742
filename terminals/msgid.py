"""`msgid` as the national platform builds it (DOMAIN.md §2.2): institution code (12)
+ yyyyMMddHHmmss (14, platform time UTC+8) + a 4-digit sequence within the second.
Unique per institution, so every sender of one institution draws from one factory."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import ClassVar

PLATFORM_TZ = dt.timezone(dt.timedelta(hours=8))


class MsgIdFactory:
    """institution code (12) + yyyyMMddHHmmss (14) + sequence (4) within the second.

    A msgid must be unique per institution, so every sender of one institution must
    draw from one factory: `Client` shares one per institution within a process
    (`for_institution`). Several processes sending for one institution must each get
    a disjoint slice of the 10 000 sequence numbers (`first_seq`, `seq_count`)."""

    _shared: ClassVar[dict[str, MsgIdFactory]] = {}

    def __init__(
        self,
        fixmedins_code: str,
        clock: Callable[[], float] = time.time,
        *,
        first_seq: int = 0,
        seq_count: int = 10_000,
    ) -> None:
        if not (first_seq >= 0 and seq_count >= 1 and first_seq + seq_count <= 10_000):
            raise ValueError("sequence slice must lie within 0..9999")
        self._code = fixmedins_code
        self._clock = clock
        self._first = first_seq
        self._count = seq_count
        self._second = -1
        self._used = 0

    @classmethod
    def for_institution(cls, fixmedins_code: str) -> MsgIdFactory:
        """The process-wide factory of an institution (real clock, full range)."""
        return cls._shared.setdefault(fixmedins_code, cls(fixmedins_code))

    async def next(self) -> str:
        while True:
            now = self._clock()
            second = int(now)
            if second != self._second:
                self._second, self._used = second, 0
            if self._used < self._count:
                seq = self._first + self._used
                self._used += 1
                stamp = dt.datetime.fromtimestamp(second, PLATFORM_TZ).strftime("%Y%m%d%H%M%S")
                return f"{self._code}{stamp}{seq:04d}"
            await asyncio.sleep(second + 1 - now)
