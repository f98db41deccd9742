"""One deadline per request (DESIGN.md §2): every database and HSM call gets
min(its cap, what is left of the request's budget) on the injected clock, and a call
that would start with nothing left raises DeadlineExceeded without reaching the
server. The connection here is a stand-in that fails the test if anything is sent:
the arithmetic, not PostgreSQL, is under test (the e2e tests run the real thing)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.txn.db import DeadlineExceeded, TxDb


class StoppedClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        raise AssertionError("a deadline needs only the monotonic clock")

    def monotonic(self) -> float:
        return self.at

    def unix(self) -> float:
        raise AssertionError("a deadline needs only the monotonic clock")


class NothingMaySend:
    def get_server_pid(self) -> int:
        return 4242

    def __getattr__(self, name: str) -> Any:
        def sent(*args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"{name} reached the connection after the budget was spent")

        return sent


def db_at(now: float, deadline: float, cap_s: float = 5.0) -> tuple[TxDb, StoppedClock]:
    clock = StoppedClock(now)
    return TxDb(NothingMaySend(), clock, deadline, cap_s), clock


def test_the_cap_holds_while_the_budget_is_larger() -> None:
    db, _ = db_at(now=100.0, deadline=110.0)
    assert db.timeout() == 5.0
    assert db.within(2.0) == 2.0  # the HSM's own cap


def test_the_remaining_budget_holds_when_it_is_smaller() -> None:
    db, clock = db_at(now=100.0, deadline=103.0)
    assert db.timeout() == pytest.approx(3.0)
    clock.at = 102.5
    assert db.timeout() == pytest.approx(0.5)
    assert db.within(2.0) == pytest.approx(0.5)


async def test_a_spent_budget_stops_the_call_before_the_server() -> None:
    db, clock = db_at(now=100.0, deadline=103.0)
    clock.at = 103.0
    with pytest.raises(DeadlineExceeded):
        db.within(2.0)
    with pytest.raises(DeadlineExceeded):
        await db.fetchval("SELECT 1")
    with pytest.raises(DeadlineExceeded):
        await db.begin()
    assert isinstance(DeadlineExceeded(), TimeoutError)  # answered 503 + Retry-After
