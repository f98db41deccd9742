"""Housekeeping of card authentication (migrations 0006, 0012): expired 9301 challenges,
burned e-card token ids and expired card proofs (credential references) are deleted in bounded batches, `grace_s` after they expired (a
margin for clock differences between engine processes and the database). Run by the
engine's background task (engine.server), beside the nonce purge (engine.nonces); not
part of any transaction, so the database's clock is the one that counts here.
"""

from __future__ import annotations

import asyncpg

# (table, its key's columns)
_TABLES = (
    ("card_challenges", "challenge"),
    ("ecard_tokens_used", "token_id"),
    ("card_proofs", "insuplc_admdvs, cred_ref"),
)


async def purge_expired(
    conn: asyncpg.Connection, *, batch_max: int, grace_s: float, timeout_s: float
) -> int:
    """Delete at most `batch_max` rows of each table (challenges, burned token ids,
    card proofs) that expired more than `grace_s` ago; return how many rows went."""
    deleted = 0
    for table, key in _TABLES:
        status = await conn.execute(
            f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}"
            " WHERE expires_at < now() - make_interval(secs => $1) LIMIT $2)",
            float(grace_s),
            batch_max,
            timeout=timeout_s,
        )
        deleted += int(status.rsplit(" ", 1)[1])
    return deleted
