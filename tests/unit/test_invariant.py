"""invariant() is for programmer errors and must stay on under `python -O`, where a
plain `assert` would silently vanish."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.invariant import InvariantViolation, invariant


def test_true_condition_passes() -> None:
    invariant(1 + 1 == 2, "arithmetic")


def test_false_condition_raises_with_the_message() -> None:
    with pytest.raises(InvariantViolation, match="entry does not balance"):
        invariant(False, "entry does not balance")


def test_stays_on_under_optimisation() -> None:
    code = "from engine.invariant import invariant\ninvariant(False, 'still checked')"
    result = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "InvariantViolation: still checked" in result.stderr
