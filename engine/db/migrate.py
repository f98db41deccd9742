"""Numbered SQL migrations: discovery, status and application.

Files `NNNN_name.sql` in `engine/db/migrations` are applied in version order, each in
its own transaction together with its row in `schema_migrations` (version, name,
SHA-256 of the file, time), so a migration is either wholly applied and recorded or not
at all. Concurrent migrators are serialised by an advisory lock. Applying twice changes
nothing. A database that records a version this build does not know is "newer than
this engine" and is refused; a recorded checksum that differs from the file means the
file was edited after it was applied, and is refused too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from importlib.resources.abc import Traversable

import asyncpg
import msgspec

from engine import constants

_NAME_RE = re.compile(constants.MIGRATION_NAME_PATTERN)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY CHECK (version > 0),
    name        text NOT NULL,
    checksum    text NOT NULL CHECK (length(checksum) = 64),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migrations or the database's record of them cannot be used."""


class SchemaTooNewError(MigrationError):
    """The database records migrations this build does not know."""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str
    checksum: str


class AppliedMigration(msgspec.Struct, frozen=True):
    version: int
    name: str
    checksum: str
    applied_at: dt.datetime


class MigrationStatus(msgspec.Struct, frozen=True):
    applied: list[AppliedMigration]
    pending: list[Migration]
    unknown: list[AppliedMigration]  # recorded in the database, not known to this build
    modified: list[int]  # versions whose file changed after it was applied
    latest_known: int  # the highest version this build ships

    @property
    def current_version(self) -> int:
        return max((m.version for m in self.applied), default=0)


def load_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Build the ordered migration list from (file name, SQL text) pairs.

    Versions must be unique and run 1, 2, 3, ... without gaps, so that a missing file
    is caught here rather than silently skipped."""
    found: dict[int, Migration] = {}
    for filename, sql in files:
        match = _NAME_RE.match(filename)
        if match is None:
            raise MigrationError(f"migration file name {filename!r} is not NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migration files have version {version:04d}")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        found[version] = Migration(version, match.group(2), sql, checksum)
    ordered = [found[v] for v in sorted(found)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing")
    return ordered


def packaged_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations shipped inside the `engine` package."""
    root = directory or importlib.resources.files("engine.db") / "migrations"
    files = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    ]
    return load_migrations(files)


async def _applied(conn: asyncpg.Connection, timeout_s: float) -> list[AppliedMigration]:
    exists = await conn.fetchval(
        "SELECT to_regclass('schema_migrations') IS NOT NULL", timeout=timeout_s
    )
    if not exists:
        return []
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
        timeout=timeout_s,
    )
    return [AppliedMigration(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows]


async def migration_status(
    conn: asyncpg.Connection, migrations: list[Migration], timeout_s: float
) -> MigrationStatus:
    applied = await _applied(conn, timeout_s)
    known = {m.version: m for m in migrations}
    done = {a.version for a in applied}
    return MigrationStatus(
        applied=[a for a in applied if a.version in known],
        pending=[m for m in migrations if m.version not in done],
        unknown=[a for a in applied if a.version not in known],
        modified=[
            a.version
            for a in applied
            if a.version in known and known[a.version].checksum != a.checksum
        ],
        latest_known=max(known, default=0),
    )


def check_usable(status: MigrationStatus) -> None:
    """Raise unless this build can run against a database in this state."""
    if status.unknown:
        newest = max(a.version for a in status.unknown)
        raise SchemaTooNewError(
            f"database schema is at version {newest:04d}, newer than this engine knows"
            f" ({status.latest_known:04d}); upgrade the engine"
        )
    if status.modified:
        versions = ", ".join(f"{v:04d}" for v in status.modified)
        raise MigrationError(f"migration file(s) {versions} changed after being applied")


async def migrate(
    conn: asyncpg.Connection, migrations: list[Migration], timeout_s: float
) -> list[Migration]:
    """Apply every pending migration in order; return the ones applied now."""
    lock_key = constants.MIGRATION_ADVISORY_LOCK_KEY
    await conn.execute("SELECT pg_advisory_lock($1)", lock_key, timeout=timeout_s)
    try:
        await conn.execute(_CREATE_TABLE, timeout=timeout_s)
        status = await migration_status(conn, migrations, timeout_s)
        check_usable(status)
        applied_now: list[Migration] = []
        for migration in status.pending:
            async with conn.transaction():
                await conn.execute(migration.sql, timeout=timeout_s)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                    timeout=timeout_s,
                )
            applied_now.append(migration)
        return applied_now
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_key, timeout=timeout_s)
