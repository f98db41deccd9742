"""Round trips to PostgreSQL, counted on each pooled connection.

One round trip is one exchange in which the engine sends PostgreSQL a batch of
protocol messages and must wait for the reply before it can go on: the unit of the
budget in DESIGN.md §2 ("at most 3 per state-changing request including
BEGIN/COMMIT"). On an asyncpg connection these are:

- a simple Query: `BEGIN`, `COMMIT` and `ROLLBACK` of `conn.transaction()`, and
  `execute()` without arguments;
- the Bind/Execute/Sync of a prepared statement: each `fetch*()`, each `execute()` with
  arguments, and one whole `executemany()` (all its Bind/Execute pairs go out before its
  single Sync);
- the Parse/Describe/Flush that prepares a statement missing from the connection's
  statement cache (first use on this connection, or after eviction or expiry), and
  the Sync that asyncpg must send after the server refused such a Parse;
- the Close/Sync of each statement evicted from that cache, sent just before the next
  prepare.

asyncpg's protocol counts simple queries and executions (`queries_count`, which its
pool reads for `max_queries`), including the queries asyncpg runs to introspect a type
it has not seen. Prepares and closes happen inside the call that needs them and are
counted neither there nor by `add_query_logger`, which reports one record per call
(BEGIN and COMMIT included) and besides allocates that record and schedules a callback
per query, delivered after the caller has moved on. This connection class adds the
prepares and closes. A statement-cache hit does exactly the lookup asyncpg's own
`_get_statement` starts with, so no query pays more than it did.

Not counted: opening a connection (startup and authentication are the pool's, not a
request's); the CancelRequest asyncpg sends on a separate connection after a timeout;
COPY and cursors, which no request uses. An `executemany()` with no rows counts one
though nothing is sent; the engine never calls it with none. An `executemany()` too
big for the socket buffers streams while the server already answers, but the client
still waits once, and it counts once.

`tests/e2e/test_db_round_trips.py` holds these counts equal to the turns seen on the
wire by a proxy between the engine and PostgreSQL, so a change of asyncpg's internals
that this class leans on (`_get_statement`, `_cleanup_stmts`, the statement-cache
key) fails that test rather than the numbers going quietly wrong.
"""

from __future__ import annotations

from typing import Any

import asyncpg


class CountingConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg connection that knows how many round trips it has made."""

    __slots__ = ("_round_trips_protocol", "_round_trips_uncounted")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # asyncpg drops `_protocol` when the connection is aborted; the count must stay
        # readable then, for the request that saw the connection die.
        self._round_trips_protocol = self._protocol
        # Prepares and closes: the round trips asyncpg's `queries_count` leaves out.
        self._round_trips_uncounted = 0

    def round_trips(self) -> int:
        """Round trips made on this connection since it was opened. A request takes
        the difference between two readings; the bound method stays readable after the
        connection went back to the pool or was closed."""
        counted: int = self._round_trips_protocol.queries_count
        return counted + self._round_trips_uncounted

    async def _get_statement(
        self,
        query: str,
        timeout: float | None,  # noqa: ASYNC109  # asyncpg's signature, overridden
        *,
        named: str | bool | None = False,
        use_cache: bool = True,
        ignore_custom_codec: bool = False,
        record_class: type | None = None,
    ) -> Any:
        if use_cache:
            if record_class is None:
                # asyncpg's own first step, so that a hit costs nothing more.
                key = (query, self._protocol.get_record_class(), ignore_custom_codec)
                cached = self._stmt_cache.get(key)
                if cached is not None:
                    return cached
            elif self._stmt_cache.has((query, record_class, ignore_custom_codec)):
                # A hit; asyncpg checks the record class on the way.
                return await super()._get_statement(
                    query,
                    timeout,
                    named=named,
                    use_cache=use_cache,
                    ignore_custom_codec=ignore_custom_codec,
                    record_class=record_class,
                )
        # A miss: asyncpg prepares (Parse/Describe/Flush) before it executes.
        self._round_trips_uncounted += 1
        try:
            return await super()._get_statement(
                query,
                timeout,
                named=named,
                use_cache=use_cache,
                ignore_custom_codec=ignore_custom_codec,
                record_class=record_class,
            )
        except asyncpg.PostgresError:
            # The server refused the Parse: asyncpg sends a Sync and waits for
            # ReadyForQuery before the connection can be used again.
            self._round_trips_uncounted += 1
            raise

    async def _cleanup_stmts(self) -> None:
        # One Close/Sync per evicted statement.
        self._round_trips_uncounted += len(self._stmts_to_close)
        await super()._cleanup_stmts()
