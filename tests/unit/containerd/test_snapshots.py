"""The snapshots service's pure parts: hawser's snapshot infos, kinds and
mounts as containerd's messages, labels both ways, field masks, List's
filters, the lease header; and the snapshotter's label merge it updates with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2 as pb
from hawser.containerd._filters import parse_filters
from hawser.containerd.snapshots import (
    check_update_paths,
    lease_of,
    matches,
    to_hawser_labels,
    to_info,
    to_kind,
    to_mount,
)
from hawser.errors import InvalidArgument
from hawser.metadata import LABEL_GC_REF_SNAPSHOT, LABEL_GC_ROOT
from hawser.snapshots import Info, Kind, Mount, NativeSnapshotter


def test_kinds_are_containerds() -> None:
    assert [to_kind(k) for k in (Kind.VIEW, Kind.ACTIVE, Kind.COMMITTED)] == [pb.VIEW, pb.ACTIVE, pb.COMMITTED]


def test_mounts_keep_type_source_and_options_without_a_target() -> None:
    overlay = to_mount(Mount(type="overlay", source="overlay",
                             options=("index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b")))
    assert (overlay.type, overlay.source, overlay.target) == ("overlay", "overlay", "")
    assert list(overlay.options) == ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]
    bind = to_mount(Mount(type="bind", source="/s/1/fs", options=("rbind", "ro")))
    assert (bind.type, bind.source, list(bind.options)) == ("bind", "/s/1/fs", ["rbind", "ro"])


def test_an_info_names_its_gc_labels_as_containerd_does() -> None:
    info = Info(key="sha256:b", kind=Kind.COMMITTED, parent="sha256:a", created=1.5, updated=2.25,
                labels={LABEL_GC_ROOT: "x", f"{LABEL_GC_REF_SNAPSHOT}.overlayfs": "k", "team": "web"})
    got = to_info(info)
    assert (got.name, got.parent, got.kind) == ("sha256:b", "sha256:a", pb.COMMITTED)
    assert dict(got.labels) == {"containerd.io/gc.root": "x", "containerd.io/gc.ref.snapshot.overlayfs": "k",
                                "team": "web"}
    assert got.created_at.ToNanoseconds() == 1_500_000_000 and got.updated_at.ToNanoseconds() == 2_250_000_000


def test_request_labels_become_hawsers() -> None:
    assert to_hawser_labels({"containerd.io/gc.root": "2024", "containerd.io/gc.ref.content.l.0": "d",
                             "other": "v"}) == {LABEL_GC_ROOT: "2024", "hawser.io/gc.ref.content.l.0": "d",
                                                "other": "v"}
    assert to_hawser_labels({}) == {}


@pytest.mark.parametrize("paths", [[], ["labels"], ["labels.a"], ["labels.a", "labels.b.c/d"]])
def test_label_paths_may_be_updated(paths: list[str]) -> None:
    check_update_paths(paths, "snap")


@pytest.mark.parametrize("path", ["parent", "name", "kind", "labels.", "label.a", "created_at"])
def test_other_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument, match=f"cannot update '{path}' field on snapshot 'snap'"):
        check_update_paths(["labels", path], "snap")


ACTIVE = Info(key="work", kind=Kind.ACTIVE, parent="sha256:top", labels={LABEL_GC_ROOT: "t", "team": "web"})
BASE = Info(key="sha256:top", kind=Kind.COMMITTED)


@pytest.mark.parametrize(("filters", "active", "base"), [
    ([], True, True),
    (["kind==active"], True, False),
    (["kind==committed"], False, True),
    (["kind==view"], False, False),
    (["name==work"], True, False),
    (["parent==sha256:top"], True, False),
    (["parent"], True, False),  # present and not empty
    (["labels.team==web"], True, False),
    (['labels."containerd.io/gc.root"'], True, False),  # containerd's name for it
    (['labels."hawser.io/gc.root"'], False, False),
    (["name~=^sha256:"], False, True),
    (["kind==active,labels.team==ops", "name==sha256:top"], False, True),
])
def test_list_filters_match_containerds_fields(filters: list[str], active: bool, base: bool) -> None:
    wanted = parse_filters(filters)
    assert (matches(wanted, ACTIVE), matches(wanted, BASE)) == (active, base)


class FakeContext:
    def __init__(self, *metadata: tuple[str, Any]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata


def test_the_lease_header_names_the_lease() -> None:
    assert lease_of(FakeContext(("containerd-namespace", "default"), ("containerd-lease", "l1"))) == "l1"  # type: ignore[arg-type]
    assert lease_of(FakeContext(("containerd-namespace", "default"))) == ""  # type: ignore[arg-type]


@pytest.fixture
def native(tmp_path: Path) -> Iterator[NativeSnapshotter]:
    snapshotter = NativeSnapshotter(str(tmp_path / "native"))
    yield snapshotter
    snapshotter.close()


def test_update_labels_merges_or_replaces(native: NativeSnapshotter) -> None:
    native.prepare("a", labels={"keep": "1", "drop": "2"})
    got = native.update_labels("a", {"drop": "", "new": "3"}, merge=True)
    assert dict(got.labels) == {"keep": "1", "new": "3"} == dict(native.stat("a").labels)
    assert got.updated >= got.created
    assert dict(native.update_labels("a", {"only": "x"}).labels) == {"only": "x"} == dict(native.stat("a").labels)
