"""`yikatong seed` reports progress on stderr at most once per interval, with the
rate and what is left, says when only the final checks and commit remain, and says
nothing for a seed shorter than one interval."""

from __future__ import annotations

import pytest

from simulators.commands import SeedProgress


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_one_line_per_interval_then_the_final_phase(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    progress = SeedProgress(1_000_000, 10.0, clock)
    clock.now_s += 4
    progress(100_000)  # within the first interval: quiet
    clock.now_s += 6
    progress(250_000)
    clock.now_s += 5
    progress(400_000)  # 5 s after the last line: quiet
    clock.now_s += 25
    progress(1_000_000)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "seed: 250,000 of 1,000,000 persons (25%), 25,000 persons/s, about 30s to go",
        "seed: 1,000,000 persons written in 40s; checking constraints and balances,"
        " then committing",
    ]


def test_a_short_seed_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    progress = SeedProgress(300, 10.0, clock)
    clock.now_s += 0.5
    progress(300)
    assert capsys.readouterr() == ("", "")
