"""The engine's clock, injected (STYLE.md §8): decisions take their time from the
request context, which takes it from here, so tests and simulations can run on a clock
of their own and no decision reads SQL's now()."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

from engine import constants

PLATFORM_TZ = dt.timezone(dt.timedelta(hours=constants.PLATFORM_UTC_OFFSET_H))


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Wall-clock time in the platform's time zone (UTC+8)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for deadlines."""
        ...

    def unix(self) -> float:
        """Unix seconds, for signature timestamps."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(PLATFORM_TZ)

    def monotonic(self) -> float:
        return time.monotonic()

    def unix(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()
