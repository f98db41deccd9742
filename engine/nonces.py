"""Replay protection: the nonces claimed per terminal, in PostgreSQL (`request_nonces`,
migration 0007), so a replay is refused after a restart and by every engine process
alike (DESIGN.md §3).

A request's nonce is claimed by its load (engine.txn.flow) or, for transactions not yet
on the core's shape, by one autocommit statement before their transaction. A nonce
only needs remembering while its timestamp is inside the clock-skew window; after that
the timestamp check alone refuses it, and `purge_expired` deletes it.
"""

from __future__ import annotations

import asyncpg


async def purge_expired(conn: asyncpg.Connection, *, batch_max: int, timeout_s: float) -> int:
    """Delete nonces whose window has passed, `batch_max` rows per statement until fewer
    are left; return how many went. Expiry is by the signature's timestamp, so the
    table holds about (request rate × 2 × skew window) rows."""
    deleted = 0
    while True:
        status = await conn.execute(
            "DELETE FROM request_nonces WHERE ctid IN (SELECT ctid FROM request_nonces"
            " WHERE expires_at < now() LIMIT $1)",
            batch_max,
            timeout=timeout_s,
        )
        n = int(status.rsplit(" ", 1)[1])
        deleted += n
        if n < batch_max:
            return deleted
