"""The leases service's pure parts: containerd's expiry label, its lease ids,
its resource types against hawser's, and the store's absolute expiry that
the label maps to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hawser.containerd.leases import (
    LABEL_GC_EXPIRE,
    format_expire,
    new_lease_id,
    parse_expire,
    to_kind,
    to_type,
    wire_labels,
)
from hawser.content import LocalStore
from hawser.errors import InvalidArgument, Unimplemented
from hawser.metadata import Lease, Metadata, check_lease_id, collect
from hawser.oci import Digest

JAN_2 = datetime(2030, 1, 2, 15, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("text", "want"), [
    ("2030-01-02T15:04:05Z", JAN_2),
    ("2030-01-02t15:04:05z", JAN_2),
    ("2030-01-02T17:04:05+02:00", JAN_2),
    ("2030-01-02T10:34:05-04:30", JAN_2),
    ("2030-01-02T15:04:05.25Z", JAN_2 + 0.25),
    ("2030-01-02T15:04:05.123456789Z", JAN_2 + 0.123456789),
])
def test_the_expiry_label_is_read_as_go_reads_rfc3339(text: str, want: float) -> None:
    assert parse_expire(text) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("text", [
    "tomorrow", "", "2030-01-02", "2030-01-02T15:04:05", "2030-01-02 15:04:05Z", "2030-13-02T15:04:05Z",
    "2030-02-30T15:04:05Z", "2030-01-02T25:04:05Z", "2030-01-02T15:04:05+24:00", "2030-01-02T15:04:05+01:60", "2030-01-02T15:04:05Z junk",
    "1893594245",
])
def test_a_malformed_expiry_is_an_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgument, match=LABEL_GC_EXPIRE):
        parse_expire(text)


def test_expiries_are_written_as_containerd_writes_them() -> None:
    assert format_expire(JAN_2 + 0.9) == "2030-01-02T15:04:05Z"
    assert parse_expire(format_expire(JAN_2)) == JAN_2


def test_lease_ids_are_made_like_containerds() -> None:
    made = new_lease_id(now_ns=lambda: 1_700_000_000_123_456_789, random=lambda n: b"\x01\x02\x03")
    assert made == "123456789-AQID"
    for _ in range(200):
        check_lease_id(new_lease_id())


def test_ctrs_random_ids_are_lease_ids() -> None:
    # b"\xfb\xff\xbf" is "-_-_" in URL-safe base64: ctr makes such ids, containerd takes them.
    assert check_lease_id(new_lease_id(now_ns=lambda: 7, random=lambda n: b"\xfb\xff\xbf")) == "7--_-_"
    for bad in ("", "a/b", "a b", "x" * 77, "é"):
        with pytest.raises(InvalidArgument):
            check_lease_id(bad)


@pytest.mark.parametrize(("type_", "kind"), [
    ("content", "content"), ("ingests", "ingest"), ("snapshots/overlayfs", "snapshot/overlayfs"),
    ("snapshots/native", "snapshot/native"),
])
def test_resource_types_map_both_ways(type_: str, kind: str) -> None:
    assert to_kind(type_) == kind and to_type(kind) == type_


@pytest.mark.parametrize("type_", ["content/x", "ingests/x", "snapshots", "snapshots/", "snapshots/a/b"])
def test_malformed_resource_types_are_invalid_arguments(type_: str) -> None:
    with pytest.raises(InvalidArgument):
        to_kind(type_)


@pytest.mark.parametrize("type_", ["images", "containers", "", "snapshot/overlayfs", "ingest"])
def test_other_resource_types_are_unimplemented_as_in_containerd(type_: str) -> None:
    with pytest.raises(Unimplemented):
        to_kind(type_)


def lease(labels: dict[str, str], expires_at: float | None) -> Lease:
    return Lease(namespace="default", id="x", labels=labels, created_at=0.0, expires_at=expires_at)


def test_a_ttl_lease_shows_its_expiry_as_containerds_label() -> None:
    assert wire_labels(lease({"a": "b"}, JAN_2)) == {"a": "b", LABEL_GC_EXPIRE: "2030-01-02T15:04:05Z"}
    assert wire_labels(lease({"a": "b"}, None)) == {"a": "b"}
    given = {LABEL_GC_EXPIRE: "2030-01-02T17:04:05+02:00"}
    assert wire_labels(lease(given, JAN_2)) == given  # the client's own text is kept


@pytest.fixture
def md(tmp_path: Path) -> Iterator[Metadata]:
    metadata = Metadata(tmp_path / "metadata.db")
    yield metadata
    metadata.close()


def test_a_lease_expires_at_the_time_it_is_given(md: Metadata, tmp_path: Path) -> None:
    content = LocalStore(tmp_path / "content")
    data = b"leased"
    digest = Digest.of(data)
    soon = time.time() + 60
    made = md.leases.create(id="until", expires_at=soon, namespace="builds")
    md.leases.add_resource(made, "content", str(digest), namespace="builds")
    with content.writer("w", expected=digest, total=len(data)) as w:
        w.write(data)
        w.commit()
    assert md.leases.get("until", namespace="builds").expires_at == soon
    assert collect(md, content, {}, grace_period=0).removed == ()
    report = collect(md, content, {}, grace_period=0, now=soon + 1)
    assert [(r.kind, r.key) for r in report.removed] == [("lease", "until"), ("blob", digest)]


def test_a_lease_given_a_past_expiry_is_made_and_collected(md: Metadata, tmp_path: Path) -> None:
    md.leases.create(id="late", expires_at=time.time() - 1)
    report = collect(md, LocalStore(tmp_path / "content"), {}, grace_period=0)
    assert [(r.kind, r.key) for r in report.leases] == [("lease", "late")]


def test_a_lease_takes_a_ttl_or_an_expiry_not_both(md: Metadata) -> None:
    with pytest.raises(InvalidArgument, match="not both"):
        md.leases.create(60, expires_at=time.time() + 60)
