"""Database access for the engine: the embedded PostgreSQL lifecycle, the asyncpg pool
and numbered SQL migrations. PostgreSQL is the only store (DESIGN.md §7)."""
