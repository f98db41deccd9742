"""Migration discovery: order by version whatever the listing order, and refuse
ambiguous or incomplete sets before anything touches a database."""

from __future__ import annotations

import pytest

from engine.db.migrate import MigrationError, load_migrations, packaged_migrations


def test_sorted_by_version_not_listing_order() -> None:
    migrations = load_migrations(
        [("0002_b.sql", "select 2"), ("0003_c.sql", "select 3"), ("0001_a.sql", "select 1")]
    )
    assert [m.version for m in migrations] == [1, 2, 3]
    assert [m.name for m in migrations] == ["a", "b", "c"]


def test_checksum_is_sha256_of_the_text() -> None:
    (m,) = load_migrations([("0001_a.sql", "select 1")])
    assert m.checksum == "822ae07d4783158bc1912bb623e5107cc9002d519e1143a9c200ed6ee18b6d0f"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("0001_a.sql", ""), ("0001_b.sql", "")], "two migration files have version 0001"),
        ([("0001_a.sql", ""), ("0003_c.sql", "")], "migration 0002 is missing"),
        ([("0002_b.sql", "")], "migration 0001 is missing"),
        ([("1_a.sql", "")], "is not NNNN_name.sql"),
        ([("0001_Add-Table.sql", "")], "is not NNNN_name.sql"),
    ],
)
def test_bad_sets_are_refused(files: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        load_migrations(files)


def test_packaged_migrations_load_in_order() -> None:
    migrations = packaged_migrations()
    assert migrations, "the engine ships at least one migration"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
