"""Blobs and ingests: digests, records against files, orphans, stale writes."""

from __future__ import annotations

import os
import time

from hawser.check import (
    BLOB_CORRUPT,
    BLOB_MISSING,
    BLOB_ORPHAN,
    IMAGE_INCOMPLETE,
    INGEST_LEFTOVER,
    INGEST_STALE,
)
from hawser.config import GCConfig
from hawser.errors import NotFound
from hawser.images import ImageService
from hawser.oci import Digest
from tests.unit.check.conftest import Node, kinds


def test_a_clean_store_has_nothing_to_report(node: Node) -> None:
    node.add_image()
    node.add_image("127.0.0.1/test/other:1", layers=1, tag="b")
    report = node.check()
    assert report.findings == () and report.exit_code == 0
    assert node.check(repair=True).findings == ()


def test_a_corrupt_layer_is_reported_then_removed_with_its_records(node: Node) -> None:
    image = node.add_image()
    layer = image.layer_digests[0]
    node.corrupt(layer)
    report = node.check()
    assert kinds(report) == [(BLOB_CORRUPT, layer)]  # the image is named there, not reported twice
    assert image.name in report.findings[0].detail and report.exit_code == 1
    assert os.path.exists(node.blob_path(layer))  # a check alone changes nothing

    repaired = node.check(repair=True)
    corrupt = [f for f in repaired.findings if f.kind == BLOB_CORRUPT]
    assert corrupt[0].repaired and corrupt[0].error is None
    # The image stays, as needing a pull; its unpacked layers stay too (verified when made).
    incomplete = [f for f in repaired.findings if f.kind == IMAGE_INCOMPLETE]
    assert incomplete[0].subject == image.name and f"layer {layer}" in incomplete[0].detail
    assert "hawser pull" in incomplete[0].detail and repaired.exit_code == 1
    try:
        node.blob_path(layer)
        raise AssertionError("the corrupt blob is still there")
    except NotFound:
        pass
    assert node.md.blobs.list() and all(b.digest != layer for b in node.md.blobs.list())
    assert node.md.images.get(image.name)
    node.store.snapshotter.stat(image.top)

    # Fetching it again (what a pull does) makes the store clean.
    node.write_blob(dict((d.digest, b) for d, b in image.built.layers)[layer])
    node.md.blobs.record(layer, image.built.layers[0][0].size, {})
    assert node.check().findings == ()


def test_a_corrupt_manifest_leaves_the_image_needing_a_pull(node: Node) -> None:
    image = node.add_image()
    manifest = image.built.manifest_desc.digest
    node.corrupt(manifest)
    report = node.check(repair=True)
    assert {(f.kind, f.repaired) for f in report.findings} == {(BLOB_CORRUPT, True), (IMAGE_INCOMPLETE, False)}
    assert f"manifest {manifest}" in next(f.detail for f in report.findings if f.kind == IMAGE_INCOMPLETE)
    assert ImageService(node.store).summary(image.name).image_id is None  # `hawser images` shows it without an ID


def test_a_corrupt_blob_a_live_lease_holds_is_left_alone(node: Node) -> None:
    image = node.add_image()
    layer = image.layer_digests[1]
    node.leased("content", layer)
    node.corrupt(layer)
    report = node.check(repair=True)
    finding = next(f for f in report.findings if f.kind == BLOB_CORRUPT)
    assert not finding.repaired and "lease" in (finding.error or "")
    assert os.path.exists(node.blob_path(layer)) and report.exit_code == 1


def test_a_lease_whose_owner_died_protects_nothing(node: Node) -> None:
    image = node.add_image()
    layer = image.layer_digests[1]
    node.leased("content", layer, owner="4242:1")
    node.host.dead_owners.add("4242:1")
    node.corrupt(layer)
    assert next(f for f in node.check(repair=True).findings if f.kind == BLOB_CORRUPT).repaired


def test_a_record_without_its_file(node: Node) -> None:
    image = node.add_image()
    layer = image.layer_digests[0]
    os.unlink(node.blob_path(layer))
    report = node.check()
    assert (BLOB_MISSING, layer) in kinds(report) and (IMAGE_INCOMPLETE, image.name) in kinds(report)
    repaired = node.check(repair=True)
    assert next(f for f in repaired.findings if f.kind == BLOB_MISSING).repaired
    assert all(b.digest != layer for b in node.md.blobs.list())
    # The image still needs a pull: that is for `hawser pull` to fix, not the check.
    assert kinds(node.check()) == [(IMAGE_INCOMPLETE, image.name)]


def test_a_file_no_record_names_is_an_orphan(node: Node) -> None:
    node.add_image()
    orphan = node.write_blob(b"nobody's bytes")
    report = node.check()
    assert kinds(report) == [(BLOB_ORPHAN, orphan)] and report.exit_code == 1
    repaired = node.check(repair=True)
    assert repaired.findings[0].repaired and repaired.exit_code == 0
    assert node.check().findings == ()


def test_leased_or_young_files_are_not_orphans(node: Node) -> None:
    leased = node.write_blob(b"a pull's layer, not recorded yet")
    node.leased("content", leased)
    assert node.check().findings == ()
    young = Node(tmp=node.tmp, store=node.store, host=node.host)
    from hawser._dataclass import replace

    young.store.config = replace(node.config, gc=GCConfig(grace_period=3600))
    node.write_blob(b"just committed")
    assert young.check().findings == ()


def test_a_stale_ingest_is_aborted_and_a_live_one_left_alone(node: Node) -> None:
    content = node.store.content
    digest = Digest.of(b"0123456789")
    with content.writer("layer-interrupted", expected=digest, total=10) as w:
        w.write(b"01234")
    live = content.writer("layer-live", expected=Digest.of(b"x"), total=1)
    try:
        report = node.check()
        assert kinds(report) == [(INGEST_STALE, "layer-interrupted")]
        assert "5 of 10 bytes" in report.findings[0].detail
        assert node.check(repair=True).findings[0].repaired
        assert [s.ref for s in content.list_statuses()] == ["layer-live"]
    finally:
        live.close()


def test_an_ingest_a_live_lease_holds_is_not_stale(node: Node) -> None:
    with node.store.content.writer("layer-leased", expected=Digest.of(b"abc"), total=3) as w:
        w.write(b"a")
    node.leased("ingest", "layer-leased")
    assert node.check().findings == ()


def test_an_ingest_directory_without_its_ref_is_cleaned_up(node: Node) -> None:
    leftover = os.path.join(node.config.root, "content", "ingest", "f" * 64)
    os.makedirs(leftover)
    with open(os.path.join(leftover, "data"), "wb") as f:
        f.write(b"half")
    old = time.time() - 60
    os.utime(leftover, (old, old))
    assert kinds(node.check()) == [(INGEST_LEFTOVER, leftover)]
    assert node.check(repair=True).findings[0].repaired
    assert not os.path.exists(leftover)
