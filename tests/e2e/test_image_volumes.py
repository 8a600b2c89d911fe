"""Image volumes over hawserd's CRI socket (issue 16, Kubernetes' ImageVolume):
a Mount with ``image`` mounts a pulled image read-only (and noexec) into the
container, ``image_sub_path`` a directory of it; bad sub paths and images not
in the store are refused clearly; removing the image, or GC, while a container
uses it breaks nothing; and the container's removal takes the volume's mount
and view snapshot with it, after a restart or a crash of hawserd too."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.registry import RegistryClient
from hawser.snapshots import new_snapshotter
from tests.e2e.helpers import pull_request, spec, status_code
from tests.support.cri_pods import Pods
from tests.support.failpoints import failpoint_env, fired
from tests.support.hawserd import Hawserd
from tests.support.images import build_image, push_image
from tests.support.layers import LayerBuilder
from tests.support.registry_fixtures import Registry

HELLO = "hello from an image volume"
SNAPSHOTTER = "overlayfs"


@dataclass
class DataImage:
    ref: str
    id: str


@pytest.fixture
def data_image(pods: Pods, registry: Registry, push_client: RegistryClient) -> DataImage:
    """An image of files, not programs (what image volumes are for), pulled:
    two layers (so its view is an overlay), a file the second one deletes, a
    script, and symlinks inside the image and out of it."""
    first = (LayerBuilder().add_dir("data").add_file("data/hello.txt", f"{HELLO}\n".encode())
             .add_dir("data/sub").add_file("data/sub/inner.txt", b"inner\n")
             .add_file("data/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
             .add_file("data/gone.txt", b"deleted by the second layer\n").add_file("data/file.txt", b"a file\n")
             .add_symlink("data/link", "sub").add_symlink("data/up", "../..").add_symlink("data/abs", "/etc")
             .build())
    second = LayerBuilder().add_dir("data/sub").add_file("data/sub/second.txt", b"second\n") \
        .add_whiteout("data/gone.txt").build()
    ref = f"{registry.host}/e2e/volume-data:v1"
    push_image(push_client, ref, build_image([first, second]), tag="v1")
    image_id = pods.hawserd.client().images.PullImage(pull_request(ref)).image_ref
    return DataImage(ref=ref, id=image_id)


def volume(image: str, path: str = "/vol", sub_path: str = "", **fields: object) -> api_pb2.Mount:
    fields.setdefault("readonly", True)  # as kubelet sends it: an image volume is read-only
    return api_pb2.Mount(container_path=path, image=api_pb2.ImageSpec(image=image), image_sub_path=sub_path,
                         **fields)  # type: ignore[arg-type]


def sh(pods: Pods, container_id: str, script: str) -> tuple[int, str]:
    response = pods.exec(container_id, "sh", "-c", script)
    return response.exit_code, (response.stdout + response.stderr).decode().strip()


def volume_mounts(hawserd: Hawserd) -> list[str]:
    """Mount points of image volumes on the host (under hawserd's container bundles)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(str(hawserd.state) + "/") and "/image-volumes/" in p]


def snapshot_keys(hawserd: Hawserd) -> list[str]:
    """The keys of hawserd's snapshotter (opened beside the running daemon, as the CLI does)."""
    snap = new_snapshotter(SNAPSHOTTER, str(hawserd.root / "snapshots" / SNAPSHOTTER))
    try:
        return sorted(info.key for info in snap.walk())
    finally:
        snap.close()


def views(hawserd: Hawserd) -> list[str]:
    """The view snapshots of image volumes."""
    return [key for key in snapshot_keys(hawserd) if key.startswith("image-volume-")]


def remove(pods: Pods, container_id: str) -> None:
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container_id, timeout=0))
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))


def check_clean(hawserd: Hawserd) -> None:
    proc = hawserd.cli("system", "check", "--format", "json", check=False)
    findings = json.loads(proc.stdout)
    assert proc.returncode == 0 and not [f for f in findings if f["severity"] == "problem"], findings


# --- mounting ----------------------------------------------------------------------------------


def test_a_container_reads_the_image_it_mounts_read_only(pods: Pods, data_image: DataImage) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    reader = pods.run(pod, pods.config("reader", "sleep", "1000", mounts=[volume(data_image.ref)]))
    assert sh(pods, reader, "cat /vol/data/hello.txt /vol/data/sub/second.txt") == (0, f"{HELLO}\nsecond")
    # Both layers, merged: the second one's whiteout hides the first one's file.
    assert sh(pods, reader, "ls /vol/data/sub; test -e /vol/data/gone.txt || echo no-gone") == \
        (0, "inner.txt\nsecond.txt\nno-gone")
    code, out = sh(pods, reader, "touch /vol/data/new")
    assert code != 0 and "Read-only file system" in out, out
    code, out = sh(pods, reader, "/vol/data/run.sh")  # noexec: its files are data, not programs
    assert code == 126 and "Permission denied" in out, (code, out)
    assert sh(pods, reader, "sh /vol/data/run.sh") == (0, "ran")
    code, out = sh(pods, reader, "grep ' /vol ' /proc/self/mountinfo")
    assert code == 0 and {"ro", "nosuid", "nodev", "noexec"} <= set(out.split()[5].split(",")), out
    # The rest of the container is as writable as ever.
    assert sh(pods, reader, "touch /tmp/x && echo ok") == (0, "ok")
    # ContainerStatus reports the mount as asked.
    status = pods.status(reader).status
    [mount] = [m for m in status.mounts if m.container_path == "/vol"]
    assert (mount.image.image, mount.readonly, mount.host_path) == (data_image.ref, True, "")

    # On the host: one read-only view, mounted under the container's bundle.
    [point] = volume_mounts(hawserd)
    assert point == str(hawserd.state / "containers" / reader / "image-volumes" / "0")
    assert views(hawserd) == [f"image-volume-{reader}-0"]
    check_clean(hawserd)

    remove(pods, reader)
    assert volume_mounts(hawserd) == [] and views(hawserd) == []
    assert not (hawserd.state / "containers" / reader).exists()
    check_clean(hawserd)


def test_image_sub_path_mounts_a_directory_of_the_image(pods: Pods, data_image: DataImage) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    mounts = [volume(data_image.ref, "/a", "data/sub"),
              volume(data_image.id, "/b", "data/link"),  # by image ID; a symlink inside the image is followed
              volume(data_image.ref, "/c", "./data/sub/../sub/")]
    box = pods.run(pod, pods.config("box", "sleep", "1000", mounts=mounts))
    assert sh(pods, box, "ls /a; ls /b; ls /c") == (0, "\n".join(["inner.txt", "second.txt"] * 3))
    assert sh(pods, box, "test -e /a/hello.txt || echo only-the-sub-path") == (0, "only-the-sub-path")
    code, out = sh(pods, box, "touch /a/new")
    assert code != 0 and "Read-only file system" in out, out
    assert views(hawserd) == sorted(f"image-volume-{box}-{i}" for i in range(3))
    assert len(volume_mounts(hawserd)) == 3
    remove(pods, box)
    assert volume_mounts(hawserd) == [] and views(hawserd) == []


def test_bad_image_volumes_are_refused_and_leave_nothing(pods: Pods, data_image: DataImage) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    before = snapshot_keys(hawserd)
    cases: list[tuple[api_pb2.Mount, grpc.StatusCode, str]] = [
        (volume(data_image.ref, sub_path="data/nope"), grpc.StatusCode.INVALID_ARGUMENT,
         f"sub path 'data/nope' does not exist in image {data_image.ref}"),
        (volume(data_image.ref, sub_path="../.."), grpc.StatusCode.INVALID_ARGUMENT,
         f"sub path '../..' leaves image {data_image.ref}"),
        (volume(data_image.ref, sub_path="data/up"), grpc.StatusCode.INVALID_ARGUMENT,  # a symlink climbing out
         f"sub path 'data/up' leaves image {data_image.ref}"),
        (volume(data_image.ref, sub_path="data/abs"), grpc.StatusCode.INVALID_ARGUMENT,
         "data/abs is an absolute symlink (to /etc)"),
        (volume(data_image.ref, sub_path="data/file.txt"), grpc.StatusCode.INVALID_ARGUMENT,
         "is not a directory"),
        (volume(data_image.ref, sub_path="/data"), grpc.StatusCode.INVALID_ARGUMENT, "must be relative"),
    ]
    for mount, code, message in cases:
        config = pods.config("bad", "sleep", "1000", mounts=[mount])
        got = status_code(pods.create, pod, config)
        assert got[0] == code and got[1].startswith("ImageVolumeMountFailed: image volume at /vol: "), got
        assert message in got[1], got
    # containerd's rules for the request itself: no host path, read-only.
    got = status_code(pods.create, pod, pods.config("bad", "sleep", "1", mounts=[volume(data_image.ref,
                                                                                        readonly=False)]))
    assert got == (grpc.StatusCode.INVALID_ARGUMENT,
                   "image volume at /vol: an image volume is read-only (hint: set readonly on the mount)")
    got = status_code(pods.create, pod, pods.config("bad", "sleep", "1", mounts=[volume(data_image.ref,
                                                                                        host_path="/srv")]))
    assert got[0] == grpc.StatusCode.INVALID_ARGUMENT and "host_path must be empty" in got[1]
    # Each failed create left nothing: no container, mount or snapshot.
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    assert volume_mounts(hawserd) == [] and snapshot_keys(hawserd) == before
    assert sorted(os.listdir(hawserd.state / "containers")) == []
    # The same name is free again: a good request now succeeds.
    good = pods.run(pod, pods.config("bad", "sleep", "1000", mounts=[volume(data_image.ref, sub_path="data")]))
    assert sh(pods, good, "cat /vol/hello.txt") == (0, HELLO)
    remove(pods, good)


def test_an_image_not_in_the_store_is_not_found(pods: Pods, data_image: DataImage, registry: Registry) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    before = snapshot_keys(hawserd)
    for missing in (f"{registry.host}/e2e/never-pulled:v1", "sha256:" + "0" * 64):
        code, message = status_code(pods.create, pod, pods.config("c", "sleep", "1", mounts=[volume(missing)]))
        assert code == grpc.StatusCode.NOT_FOUND, message
        assert message == (f"ImageVolumeMountFailed: image volume at /vol: image {missing!r} not found "
                           "(hint: pull it first (PullImage))")
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    assert snapshot_keys(hawserd) == before and volume_mounts(hawserd) == []


# --- GC ------------------------------------------------------------------------------------------


def test_removing_the_image_or_gc_while_mounted_breaks_nothing(pods: Pods, data_image: DataImage) -> None:
    hawserd = pods.hawserd
    images = hawserd.client().images
    info = json.loads(images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(data_image.ref),
                                                                    verbose=True)).info["info"])
    layers = info["chainIDs"]
    assert len(layers) == 2 and set(layers) <= set(snapshot_keys(hawserd))
    pod = pods.pod()
    reader = pods.run(pod, pods.config("reader", "sleep", "1000", mounts=[volume(data_image.ref)]))

    # RemoveImage removes the image, as containerd's does (kubelet's image GC skips images in use)...
    images.RemoveImage(api_pb2.RemoveImageRequest(image=spec(data_image.ref)))
    assert not images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(data_image.ref))).HasField("image")
    # ... and GC (RemoveImage ran one; here is another) keeps what the container uses: its view and
    # the layers under it, so the container reads on.
    hawserd.cli("-n", "k8s.io", "system", "prune")
    assert set(layers) | {f"image-volume-{reader}-0"} <= set(snapshot_keys(hawserd))
    assert sh(pods, reader, "cat /vol/data/hello.txt; ls /vol/data/sub") == (0, f"{HELLO}\ninner.txt\nsecond.txt")
    check_clean(hawserd)  # nothing unreferenced: the container's snapshot names its view

    # A new container cannot mount the image any more: it is not in the store.
    code, _ = status_code(pods.create, pod, pods.config("late", "sleep", "1", mounts=[volume(data_image.ref)]))
    assert code == grpc.StatusCode.NOT_FOUND
    # Once the container goes, its view goes, and the image's layers are GC's.
    remove(pods, reader)
    assert views(hawserd) == [] and volume_mounts(hawserd) == []
    hawserd.cli("-n", "k8s.io", "system", "prune")
    assert not set(layers) & set(snapshot_keys(hawserd))
    check_clean(hawserd)


# --- restarts and crashes --------------------------------------------------------------------------


def test_removal_after_a_restart_takes_the_mount_and_snapshot(pods: Pods, data_image: DataImage) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    reader = pods.run(pod, pods.config("reader", "sleep", "1000", mounts=[volume(data_image.ref, sub_path="data")]))
    assert hawserd.stop() == 0
    hawserd.start()
    # The container kept running, and reading, while hawserd was down.
    assert pods.status(reader).status.state == api_pb2.CONTAINER_RUNNING
    assert sh(pods, reader, "cat /vol/hello.txt") == (0, HELLO)
    assert len(volume_mounts(hawserd)) == 1 and views(hawserd) == [f"image-volume-{reader}-0"]
    # A running container removed at once (the CRI's RemoveContainer forces it).
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=reader))
    assert volume_mounts(hawserd) == [] and views(hawserd) == []
    check_clean(hawserd)


def test_a_crash_during_create_leaves_nothing_after_removal(pods: Pods, data_image: DataImage, tmp_path: Path) -> None:
    hawserd = pods.hawserd
    pod = pods.pod()
    log = tmp_path / "failpoints.log"
    assert hawserd.stop() == 0
    # Killed once the volume is mounted, before conmon: a record, a bundle, a mounted view.
    hawserd.start(env=failpoint_env("create.after-mount=kill", log))
    code, _ = status_code(pods.create, pod, pods.config("victim", "sleep", "1000", mounts=[volume(data_image.ref)]))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert hawserd.process is not None and hawserd.process.wait(10) == -signal.SIGKILL
    assert fired(log) == [("create.after-mount", "kill")]
    hawserd.close_clients()
    hawserd.start()
    [victim] = [c.id for c in pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers]
    assert volume_mounts(hawserd) == [str(hawserd.state / "containers" / victim / "image-volumes" / "0")]
    assert views(hawserd) == [f"image-volume-{victim}-0"]
    # What kubelet does with a container it never heard of: the pod's removal takes it.
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    assert volume_mounts(hawserd) == [] and views(hawserd) == []
    check_clean(hawserd)
