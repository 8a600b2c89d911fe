"""Schema migrations: old databases are brought up to date, newer ones refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hawser.errors import FailedPrecondition
from hawser.metadata import MIGRATIONS, Metadata
from hawser.oci import Descriptor, Digest, media

TARGET = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(b"m"), size=1)

# A step a later version might append (see hawser.metadata._schema).
FUTURE = (
    """CREATE TABLE future_things (
        namespace TEXT NOT NULL REFERENCES namespaces(name),
        id TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
    )""",
)


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def tables_of(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_a_version_zero_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (0)")
    conn.commit()
    conn.close()
    with Metadata(path) as md:
        assert md.schema_version == len(MIGRATIONS)
        md.images.create("img", TARGET)
    assert {"namespaces", "images", "blobs", "leases", "lease_resources"} <= tables_of(path)


def test_an_old_database_is_migrated_keeping_its_records(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as md:
        md.images.create("img", TARGET)
    assert version_of(path) == len(MIGRATIONS)

    newer = (*MIGRATIONS, FUTURE)
    with Metadata(path, migrations=newer) as md:
        assert md.schema_version == len(MIGRATIONS) + 1
        assert md.images.get("img").target == TARGET
    assert "future_things" in tables_of(path)
    # Opening again with the same code is a no-op.
    with Metadata(path, migrations=newer) as md:
        assert md.schema_version == len(newer)


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    Metadata(path, migrations=(*MIGRATIONS, FUTURE)).close()
    with pytest.raises(FailedPrecondition, match=rf"schema version {len(MIGRATIONS) + 1}, newer than"):
        Metadata(path)
    assert version_of(path) == len(MIGRATIONS) + 1


def test_a_failing_step_is_rolled_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    Metadata(path).close()
    broken = ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL")
    with pytest.raises(FailedPrecondition, match=rf"migration to schema version {len(MIGRATIONS) + 1} failed"):
        Metadata(path, migrations=(*MIGRATIONS, broken))
    assert version_of(path) == len(MIGRATIONS)
    assert "half_done" not in tables_of(path)
    # The database still opens with the code that wrote it.
    Metadata(path).close()


def test_two_openers_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    a = Metadata(path)
    b = Metadata(path)
    a.close()
    b.close()
    assert version_of(path) == len(MIGRATIONS)
