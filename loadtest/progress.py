"""The live progress line: elapsed, arrivals (units started) and answers per second, errors, units done and p99 so
far. On a terminal it rewrites one line; in a log (CI, a file) it prints a line every
few seconds."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from hdrh.histogram import HdrHistogram

from loadtest.recorder import SIGFIGS_SERIES, new_histogram

LOG_EVERY_S = 5.0


class ProgressLine:
    def __init__(self, label: str, duration_s: float, out: TextIO | None = None) -> None:
        self.label = label
        self.duration_s = duration_s
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.so_far = new_histogram(SIGFIGS_SERIES)
        self._last_log = 0.0
        self._last: tuple[float, int, int] = (0.0, 0, 0)

    def update(
        self,
        elapsed_s: float,
        due: int,
        answered: int,
        errors: int,
        units: int,
        window: HdrHistogram,
        in_flight: int,
    ) -> None:
        self.so_far.add(window)
        if elapsed_s < 0:  # workers still signing in before the shared start
            return
        t_prev, due_prev, ans_prev = self._last
        dt_s = max(elapsed_s - t_prev, 1e-6)
        self._last = (elapsed_s, due, answered)
        p99_ms = self.so_far.get_value_at_percentile(99.0) / 1000 if answered else 0.0
        line = (
            f"{self.label} {min(elapsed_s, self.duration_s):5.1f}/{self.duration_s:.0f}s"
            f"  arrivals {(due - due_prev) / dt_s:6.1f}/s  answers {(answered - ans_prev) / dt_s:7.1f}/s"
            f"  errors {errors}  units {units}  in flight {in_flight}  p99 so far {p99_ms:.1f} ms"
        )
        now = time.monotonic()
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
            self.out.flush()
        elif now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self.out.write(line + "\n")
            self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
