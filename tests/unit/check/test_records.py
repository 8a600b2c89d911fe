"""Records: images and what they name, containers, pods."""

from __future__ import annotations

import os
import threading
import time

from hawser.check import (
    BLOB_UNRECORDED,
    CONTAINER_SANDBOX_MISSING,
    CONTAINER_SNAPSHOT_MISSING,
    IMAGE_INCOMPLETE,
    INFO,
    SANDBOX_NOT_READY,
    SNAPSHOT_REF_MISSING,
)
from hawser.host import FileLock
from hawser.metadata import snapshot_ref_label
from tests.unit.check.conftest import Node, kinds


def test_records_an_image_needs_are_rebuilt_with_their_labels(node: Node) -> None:
    image = node.add_image()
    manifest, config = image.built.manifest_desc.digest, image.built.config_desc.digest
    labels = {d: node.md.blobs.get(d).labels for d in (manifest, config)}
    for digest in (manifest, config, image.layer_digests[1]):
        node.md.blobs.delete(digest)
    report = node.check()
    assert kinds(report) == sorted((BLOB_UNRECORDED, d) for d in (manifest, config, image.layer_digests[1]))
    assert all(f.repaired for f in node.check(repair=True).findings)
    assert {d: node.md.blobs.get(d).labels for d in (manifest, config)} == labels
    assert node.check().findings == ()


def test_a_config_label_naming_a_missing_snapshot_is_dropped(node: Node) -> None:
    image = node.add_image()
    config = image.built.config_desc.digest
    label = snapshot_ref_label(node.store.snapshotter.name)
    node.md.blobs.update_labels(config, {label: "sha256:" + "0" * 64}, merge=True)
    assert kinds(node.check()) == [(IMAGE_INCOMPLETE, image.name), (SNAPSHOT_REF_MISSING, config)]
    assert next(f for f in node.check(repair=True).findings if f.kind == SNAPSHOT_REF_MISSING).repaired
    assert label not in node.md.blobs.get(config).labels


def test_an_image_unpacked_for_another_snapshotter_only_is_fine(node: Node) -> None:
    image = node.add_image()
    config = image.built.config_desc.digest
    node.md.blobs.update_labels(config, {snapshot_ref_label("overlayfs"): image.top})
    assert node.check().findings == ()


def test_a_stopped_container_whose_snapshot_is_gone_is_removed(node: Node) -> None:
    image = node.add_image()
    container = node.add_container(image)
    node.store.snapshotter.remove(container.snapshot_key)
    report = node.check()
    assert kinds(report) == [(CONTAINER_SNAPSHOT_MISSING, container.id)]
    repaired = node.check(repair=True)
    assert repaired.findings[0].repaired and ("remove_container", container.id) in node.host.calls
    assert node.md.containers.list() == []


def test_a_running_container_is_never_removed(node: Node) -> None:
    image = node.add_image()
    container = node.add_container(image)
    node.host.runc[container.id] = "running"
    node.store.snapshotter.remove(container.snapshot_key)
    finding = node.check(repair=True).findings[0]
    assert finding.kind == CONTAINER_SNAPSHOT_MISSING and not finding.repaired
    assert "running" in (finding.error or "") and node.md.containers.list() == [container]
    assert not any(call[0] == "remove_container" for call in node.host.calls)


def test_a_container_being_created_is_judged_once_its_creator_is_done(node: Node) -> None:
    image = node.add_image()
    locks = os.path.join(node.state, "locks")
    os.makedirs(locks)
    container_id = os.urandom(32).hex()
    creating = FileLock(os.path.join(locks, f"container-{container_id}.lock"))
    creating.acquire()  # as ContainerManager.create holds it, from before the record on
    container = node.add_container(image, id_=container_id, snapshot=False)

    def finish_create() -> None:
        time.sleep(0.3)
        node.store.snapshotter.prepare(container.snapshot_key, image.top)
        creating.release()

    creator = threading.Thread(target=finish_create)
    creator.start()
    try:
        assert node.check(repair=True).findings == ()
    finally:
        creator.join()
    assert node.md.containers.list() == [container]


def test_a_container_of_a_pod_that_has_no_record(node: Node) -> None:
    image = node.add_image()
    pod = node.add_sandbox()
    kept = node.add_container(image, labels={"io.hawser.cri.sandbox-id": pod.id})
    lost = node.add_container(image, labels={"io.hawser.cri.sandbox-id": "f" * 64})
    assert kinds(node.check()) == [(CONTAINER_SANDBOX_MISSING, lost.id)]
    node.check(repair=True)
    assert [c.id for c in node.md.containers.list()] == [kept.id]


def test_a_pod_whose_namespaces_are_gone_is_info_only(node: Node) -> None:
    pins = os.path.join(node.state, "sandboxes", "a" * 64, "ns")
    pod = node.add_sandbox(id_="a" * 64, status={"net": f"{pins}/net", "ipc": f"{pins}/ipc",
                                                 "cgroup_parent": "/hawser-unit/pod-aaaaaaaaaaaa"})
    node.host.namespaces[f"{pins}/ipc"] = "ipc"  # net is gone, ipc is still pinned
    report = node.check()
    assert kinds(report) == [(SANDBOX_NOT_READY, pod.id)]
    assert report.findings[0].severity == INFO and "net namespace" in report.findings[0].detail
    assert report.exit_code == 0
    node.add_sandbox(ready=False)  # a pod already marked not ready is not news
    assert len(node.check().findings) == 1


def test_an_index_image_needs_only_the_manifests_its_pull_stored(node: Node) -> None:
    import json

    from hawser.images._labels import index_labels
    from hawser.oci import Descriptor, Digest, media

    image = node.add_image()
    absent = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(b"another platform's manifest"), size=27)
    index = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                        "manifests": [image.built.manifest_desc.to_json(), absent.to_json()]}).encode()
    digest = node.write_blob(index)
    node.md.blobs.record(digest, len(index), index_labels([image.built.manifest_desc]))
    node.md.images.put("127.0.0.1/test/multi:1", Descriptor(media_type=media.OCI_INDEX, digest=digest,
                                                           size=len(index)))
    assert node.check().findings == ()
    # Without its record, the index is recorded again, naming the manifests that are stored.
    node.md.blobs.delete(digest)
    assert kinds(node.check()) == [(BLOB_UNRECORDED, digest)]
    node.check(repair=True)
    assert dict(node.md.blobs.get(digest).labels) == index_labels([image.built.manifest_desc])
    # A stored manifest the index record names, gone: the image is incomplete.
    os.unlink(node.blob_path(image.built.manifest_desc.digest))
    node.md.images.delete(image.name)
    node.md.blobs.delete(image.built.manifest_desc.digest)
    report = node.check()
    assert (IMAGE_INCOMPLETE, "127.0.0.1/test/multi:1") in kinds(report)
    assert f"manifest {image.built.manifest_desc.digest}" in next(
        f.detail for f in report.findings if f.kind == IMAGE_INCOMPLETE)


def test_namespaces_share_blobs_and_a_corrupt_one_goes_from_each(node: Node) -> None:
    from hawser.check import BLOB_CORRUPT

    image = node.add_image()
    for desc in (image.built.manifest_desc, image.built.config_desc, *(d for d, _ in image.built.layers)):
        node.md.blobs.record(desc.digest, desc.size, dict(node.md.blobs.get(desc.digest).labels), namespace="k8s.io")
    node.md.images.put(image.name, image.built.manifest_desc, namespace="k8s.io")
    assert node.check().findings == ()
    layer = image.layer_digests[0]
    node.corrupt(layer)
    report = node.check()
    assert kinds(report) == [(BLOB_CORRUPT, layer)]
    assert f"{image.name}, k8s.io/{image.name}" in report.findings[0].detail
    repaired = node.check(repair=True)
    assert (IMAGE_INCOMPLETE, f"k8s.io/{image.name}") in kinds(repaired)
    assert all(b.digest != layer for ns in ("default", "k8s.io") for b in node.md.blobs.list(namespace=ns))
