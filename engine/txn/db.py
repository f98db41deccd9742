"""The database as one request sees it: one pooled connection, one deadline.

Every call gets `timeout = min(cap, remaining)`, where `remaining` is what is left of
the request's budget on the injected clock (asyncpg's pool.py spends its budget the
same way); a call that would start with nothing left raises `DeadlineExceeded` without
touching the server. The transaction is driven here too — BEGIN, and the write sent
together with COMMIT as one simple query, so a state-changing request makes three
round trips: BEGIN, its load, its write + COMMIT (DESIGN.md §2).

No `asyncpg.Record` leaves this module: loads come back as the JSON text PostgreSQL
built, decoded by the caller into typed Structs.
"""

from __future__ import annotations

import enum
from typing import Any

import asyncpg

from engine.clock import Clock
from engine.invariant import invariant


class DeadlineExceeded(TimeoutError):
    """The request's budget ran out before a database call could start."""


class TxState(enum.Enum):
    idle = "idle"  # autocommit: no transaction open
    open = "open"
    failed = "failed"  # an error inside the transaction: only ROLLBACK is possible


def sql_string_literal(text: str) -> str:
    """`text` as a standard-conforming SQL string literal ('' doubles a quote; the
    engine checks standard_conforming_strings is on at connect, so a backslash is just
    a character). NUL cannot be represented and is refused at the edge."""
    invariant("\x00" not in text, "a NUL character reached a SQL literal")
    return "'" + text.replace("'", "''") + "'"


class TxDb:
    def __init__(self, conn: asyncpg.Connection, clock: Clock, deadline: float, cap_s: float):
        self._conn = conn
        self._clock = clock
        self.deadline = deadline
        self._cap_s = cap_s
        self.state = TxState.idle
        # The backend serving this request, to find out what became of a commit whose
        # answer the line lost.
        self.server_pid: int = conn.get_server_pid()

    def timeout(self) -> float:
        """The next database call's timeout: min(database cap, remaining)."""
        return self.within(self._cap_s)

    def within(self, cap_s: float) -> float:
        """min(cap_s, what is left of the request's budget) — for any call under the
        request's deadline (the HSM's too); DeadlineExceeded when nothing is left."""
        remaining = self.deadline - self._clock.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's time budget is spent")
        return min(cap_s, remaining)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._guard(self._conn.fetchval(sql, *args, timeout=self.timeout()))

    async def execute(self, sql: str, *args: Any) -> str:
        result: str = await self._guard(self._conn.execute(sql, *args, timeout=self.timeout()))
        return result

    async def begin(self) -> None:
        invariant(self.state is TxState.idle, f"BEGIN with a transaction {self.state.value}")
        await self._conn.execute("BEGIN", timeout=self.timeout())
        self.state = TxState.open

    async def commit(self) -> None:
        invariant(self.state is TxState.open, f"COMMIT with the transaction {self.state.value}")
        await self._guard(self._conn.execute("COMMIT", timeout=self.timeout()))
        self.state = TxState.idle

    async def write_and_commit(self, function: str, doc_json: str) -> None:
        """`SELECT function(doc); COMMIT` in one round trip (a simple query: its one
        parameter travels as a literal). If the write raises, PostgreSQL skips the
        COMMIT and the transaction is left failed for `rollback()`."""
        invariant(self.state is TxState.open, f"write with the transaction {self.state.value}")
        invariant(function.isidentifier(), f"not a function name: {function!r}")
        sql = f"SELECT {function}({sql_string_literal(doc_json)}::jsonb); COMMIT"
        await self._guard(self._conn.execute(sql, timeout=self.timeout()))
        self.state = TxState.idle

    async def rollback(self) -> None:
        """End a transaction that is open or failed; nothing to do when idle. Runs even
        when the budget is spent (a short fixed timeout), so the connection goes back
        to the pool clean."""
        if self.state is TxState.idle:
            return
        await self._conn.execute("ROLLBACK", timeout=max(0.5, self._cap_s))
        self.state = TxState.idle

    async def _guard(self, call: Any) -> Any:
        try:
            return await call
        except asyncpg.PostgresError:
            if self.state is TxState.open:
                self.state = TxState.failed
            raise
