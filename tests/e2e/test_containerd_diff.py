"""containerd's Diff.Apply on hawserd: a stored layer unpacked onto an active
snapshot's mounts with hawser's applier, as a containerd client's unpack does."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from hawser.config import apply_overrides, load_config
from hawser.containerd._api.services.diff.v1 import diff_pb2, diff_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2, mount_pb2
from hawser.store import Store
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

NS = (("containerd-namespace", "default"),)


@pytest.fixture
def pulled(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> Iterator[tuple[Store, BuiltImage]]:
    """hawserd's store with the busybox image pulled into namespace default, opened beside the daemon."""
    ref, built = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("pull", "--plain-http", "-q", ref)
    config = apply_overrides(load_config(str(hawserd.config_file)), {"root": str(hawserd.root),
                                                                      "state": str(hawserd.state)})
    store = Store.open(config)
    try:
        yield store, built
    finally:
        store.close()


def diff_stub(hawserd: Hawserd) -> tuple[grpc.Channel, diff_pb2_grpc.DiffStub]:
    channel = grpc.insecure_channel(f"unix:{hawserd.containerd_address}", options=[("grpc.enable_http_proxy", 0)])
    return channel, diff_pb2_grpc.DiffStub(channel)


def as_mounts(mounts: list[object]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]  # type: ignore[attr-defined]


def test_apply_unpacks_a_stored_layer_onto_a_snapshot(hawserd: Hawserd, pulled: tuple[Store, BuiltImage]) -> None:
    store, built = pulled
    layer, _ = built.layers[0]
    mounts = store.snapshotter.prepare("ctr-apply-test")
    channel, stub = diff_stub(hawserd)
    try:
        applied = stub.Apply(diff_pb2.ApplyRequest(
            diff=descriptor_pb2.Descriptor(media_type=layer.media_type, digest=str(layer.digest), size=layer.size),
            mounts=as_mounts(mounts)), metadata=NS).applied
        assert applied.digest == built.diff_ids[0]  # the uncompressed layer's digest: its diff ID
        assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
        upper = next((o.split("=", 1)[1] for o in mounts[0].options if o.startswith("upperdir=")), mounts[0].source)
        assert os.access(os.path.join(upper, "bin", "busybox"), os.X_OK)
        store.snapshotter.commit(built.diff_ids[0] + "-ctr-apply-test", "ctr-apply-test")  # as a client commits

        def code(request: diff_pb2.ApplyRequest, metadata: tuple[tuple[str, str], ...] = NS) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as failed:
                stub.Apply(request, metadata=metadata)
            return failed.value.code()  # type: ignore[attr-defined, no-any-return]

        good = descriptor_pb2.Descriptor(media_type=layer.media_type, digest=str(layer.digest), size=layer.size)
        outside = [mount_pb2.Mount(type="bind", source=str(hawserd.base), options=["rbind", "rw"])]
        assert code(diff_pb2.ApplyRequest(diff=good, mounts=outside)) == grpc.StatusCode.INVALID_ARGUMENT
        view = store.snapshotter.view("ctr-apply-view", built.diff_ids[0] + "-ctr-apply-test")
        assert code(diff_pb2.ApplyRequest(diff=good, mounts=as_mounts(view))) == grpc.StatusCode.INVALID_ARGUMENT
        unknown = descriptor_pb2.Descriptor(media_type=layer.media_type, digest="sha256:" + "0" * 64, size=1)
        assert code(diff_pb2.ApplyRequest(diff=unknown, mounts=as_mounts(mounts))) == grpc.StatusCode.NOT_FOUND
        assert code(diff_pb2.ApplyRequest(diff=good, mounts=as_mounts(mounts)), metadata=()) == \
            grpc.StatusCode.FAILED_PRECONDITION
    finally:
        channel.close()
        for key in ("ctr-apply-view", built.diff_ids[0] + "-ctr-apply-test", "ctr-apply-test"):
            try:
                store.snapshotter.remove(key)
            except Exception:
                pass
