"""Reading py-spy's collapsed stacks: own time goes to the innermost frame, inclusive
time to each of our own functions on the stack once per sample (recursion does not
count twice), line numbers are dropped so one function's samples add up, and
site-packages paths are shortened."""

from __future__ import annotations

import pytest

from loadtest.profile import parse_collapsed

COLLAPSED = """\
<module> (engine/__main__.py:3);handle_tx (engine/http_tx.py:210);_do_execute (/x/.venv/lib/python3.11/site-packages/asyncpg/connection.py:1800) 6
<module> (engine/__main__.py:3);handle_tx (engine/http_tx.py:212);run (engine/txn/pipeline.py:40);run (engine/txn/pipeline.py:41) 3
<module> (engine/__main__.py:3);observe (engine/app.py:90) 1
not a stack line
"""


def test_own_and_inclusive_shares_from_collapsed_stacks() -> None:
    samples, own, inclusive = parse_collapsed(COLLAPSED)
    assert samples == 10
    assert [(e.frame, e.share) for e in own] == [
        ("_do_execute (asyncpg/connection.py)", 0.6),
        ("run (engine/txn/pipeline.py)", 0.3),
        ("observe (engine/app.py)", 0.1),
    ]
    got = {e.frame: e.share for e in inclusive}
    assert got["handle_tx (engine/http_tx.py)"] == pytest.approx(0.9)
    assert got["run (engine/txn/pipeline.py)"] == pytest.approx(0.3)  # recursion once
    assert "<module> (engine/__main__.py)" not in got  # the entry point is under everything
    assert not any("asyncpg" in f for f in got)  # inclusive lists our own code only


def test_empty_profile_has_no_entries() -> None:
    assert parse_collapsed("") == (0, [], [])
