"""What kubelet 1.30 to 1.35 reads from a runtime (issue 16), over hawserd's CRI
socket: ContainerStopSignals, the image_id of Container and ContainerStatus,
ImageFsInfo's container_filesystems (KubeletSeparateDiskGC) and
SupplementalGroupsPolicy with ContainerStatus.user."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from hawser.oci import Descriptor, Digest
from hawser.registry import RegistryClient
from tests.e2e.helpers import pull_request, spec
from tests.support.cri_pods import Pods
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import GROUP, LayerBuilder, busybox_layers
from tests.support.registry_fixtures import Registry

# The busybox image's user "app" (1000:1000), put in one more group by an image's /etc/group.
APP, EXTRA_GROUP, REQUESTED_GROUP = 1000, 2000, 4000
GROUP_WITH_EXTRA = GROUP + f"extra:x:{EXTRA_GROUP}:app\n".encode()


def image_with(*, stop_signal: str = "", group: bytes | None = None) -> BuiltImage:
    """The busybox test image with a STOPSIGNAL and/or another /etc/group (a layer over it)."""
    layers = busybox_layers()
    if group is not None:
        layers.append(LayerBuilder().add_dir("etc").add_file("etc/group", group).build())
    built = build_image(layers)
    config = json.loads(built.config)
    if stop_signal:
        config["config"]["StopSignal"] = stop_signal
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_desc = Descriptor(media_type=built.config_desc.media_type, digest=Digest.of(config_bytes),
                             size=len(config_bytes))
    manifest = json.loads(built.manifest)
    manifest["config"] = config_desc.to_json()
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_desc = Descriptor(media_type=built.manifest_desc.media_type, digest=Digest.of(manifest_bytes),
                               size=len(manifest_bytes))
    return dataclasses.replace(built, config=config_bytes, config_desc=config_desc, manifest=manifest_bytes,
                               manifest_desc=manifest_desc)


def pulled(pods: Pods, registry: Registry, push_client: RegistryClient, name: str, image: BuiltImage) -> str:
    ref = f"{registry.host}/e2e/{name}:v1"
    push_image(push_client, ref, image, tag="v1")
    pods.hawserd.client().images.PullImage(pull_request(ref))
    return ref


def trapping(signal_name: str, code: int) -> tuple[str, ...]:
    """A shell that says which signal it got and exits with ``code`` on it (and dies of any other)."""
    return ("sh", "-c", f"trap 'echo got-{signal_name}; exit {code}' {signal_name}; while :; do sleep 0.1; done")


def stop(pods: Pods, container_id: str) -> api_pb2.ContainerStatus:
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container_id, timeout=10))
    status = pods.status(container_id).status
    assert status.state == api_pb2.CONTAINER_EXITED
    return status


# --- ContainerStopSignals -------------------------------------------------------------------


def test_the_requested_stop_signal_is_kept_reported_and_sent(pods: Pods) -> None:
    pod = pods.pod("signals")
    usr1 = pods.run(pod, pods.config("usr1", *trapping("USR1", 7), stop_signal=api_pb2.SIGUSR1))
    plain = pods.run(pod, pods.config("plain", "sleep", "1000"))
    real_time = pods.create(pod, pods.config("rt", "sleep", "1000", stop_signal=api_pb2.SIGRTMINPLUS3))
    assert pods.status(usr1).status.stop_signal == api_pb2.SIGUSR1
    assert pods.status(real_time).status.stop_signal == api_pb2.SIGRTMINPLUS3
    # Neither the request nor the image names one: unset (StopContainer sends SIGTERM).
    assert pods.status(plain).status.stop_signal == api_pb2.RUNTIME_DEFAULT

    # The signal is in the container's record: a restarted hawserd still sends it.
    assert pods.hawserd.stop() == 0
    pods.hawserd.start()
    assert pods.status(usr1).status.stop_signal == api_pb2.SIGUSR1
    stopped = stop(pods, usr1)
    assert (stopped.exit_code, stopped.reason) == (7, "Error")
    assert pods.log_lines(stopped.log_path) == ["got-USR1"]
    assert stopped.stop_signal == api_pb2.SIGUSR1
    assert stop(pods, plain).exit_code == 128 + 15  # SIGTERM


def test_the_images_stop_signal_is_reported_and_sent_unless_the_request_names_one(
        pods: Pods, registry: Registry, push_client: RegistryClient) -> None:
    ref = pulled(pods, registry, push_client, "stopsignal", image_with(stop_signal="SIGQUIT"))
    pod = pods.pod("image-signal")
    quit_ = pods.run(pod, pods.config("quit", *trapping("QUIT", 8), image__image=ref))
    usr1 = pods.run(pod, pods.config("usr1", *trapping("USR1", 7), image__image=ref, stop_signal=api_pb2.SIGUSR1))
    assert pods.status(quit_).status.stop_signal == api_pb2.SIGQUIT  # as containerd reports it
    assert pods.status(usr1).status.stop_signal == api_pb2.SIGUSR1
    by_image = stop(pods, quit_)
    assert by_image.exit_code == 8 and pods.log_lines(by_image.log_path) == ["got-QUIT"]
    by_request = stop(pods, usr1)
    assert by_request.exit_code == 7 and pods.log_lines(by_request.log_path) == ["got-USR1"]


# --- image_id -----------------------------------------------------------------------------


def test_image_id_is_the_images_id_and_image_ref_its_repo_digest(
        pods: Pods, registry: Registry, busybox: tuple[str, BuiltImage]) -> None:
    _, built = busybox
    image_id = str(built.config_desc.digest)
    assert pods.image_id == image_id  # PullImage's answer: the image's ID, the config digest
    pod = pods.pod("ids")
    container_id = pods.create(pod, pods.config("idle", "sleep", "1000"))
    [listed] = pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers
    status = pods.status(container_id).status
    for message in (listed, status):
        assert message.image_id == image_id
        assert message.image_ref == f"{registry.host}/test/busybox@{built.manifest_desc.digest}"
        assert message.image.image == pods.image
    # kubelet's image GC matches a container's image_id to an image of ListImages / ImageStatus.
    images = pods.hawserd.client().images
    assert image_id in {i.id for i in images.ListImages(api_pb2.ListImagesRequest()).images}
    assert images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(status.image_id))).image.id == image_id


# --- ImageFsInfo: container_filesystems -----------------------------------------------------


def test_container_filesystems_count_the_writable_layers(pods: Pods) -> None:
    images = pods.hawserd.client().images
    pod = pods.pod("writer")
    writer = pods.run(pod, pods.config("writer", "sleep", "1000"))
    before = images.ImageFsInfo(api_pb2.ImageFsInfoRequest())
    assert len(before.image_filesystems) == 1 and len(before.container_filesystems) == 1
    image_fs, container_fs = before.image_filesystems[0], before.container_filesystems[0]
    assert image_fs.fs_id.mountpoint == str(pods.hawserd.root)
    mountpoint = Path(container_fs.fs_id.mountpoint)
    assert mountpoint.is_absolute() and mountpoint.is_dir() and pods.hawserd.root in mountpoint.parents
    # One filesystem here: reported in both, as the same device.
    assert os.stat(mountpoint).st_dev == os.stat(image_fs.fs_id.mountpoint).st_dev
    assert container_fs.timestamp > 0 and container_fs.HasField("used_bytes") and container_fs.HasField("inodes_used")

    written = pods.exec(writer, "dd", "if=/dev/zero", "of=/big.bin", "bs=1M", "count=3")
    assert written.exit_code == 0, written.stderr
    after = images.ImageFsInfo(api_pb2.ImageFsInfoRequest())
    grown = after.container_filesystems[0]
    assert grown.fs_id.mountpoint == str(mountpoint)
    assert grown.used_bytes.value >= container_fs.used_bytes.value + 3 * 1024 * 1024 > 0
    assert grown.inodes_used.value > container_fs.inodes_used.value
    assert grown.timestamp >= container_fs.timestamp
    # The layers of the images are not the containers' (and the other way round).
    assert abs(after.image_filesystems[0].used_bytes.value - image_fs.used_bytes.value) < 1024 * 1024

    stop(pods, writer)
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=writer))
    gone = images.ImageFsInfo(api_pb2.ImageFsInfoRequest()).container_filesystems[0]
    assert gone.used_bytes.value < grown.used_bytes.value - 3 * 1024 * 1024


# --- SupplementalGroupsPolicy and ContainerStatus.user ----------------------------------------


def process_groups(pods: Pods, container_id: str) -> tuple[int, int, set[int]]:
    """The real uid, gid and supplementary groups of the container's first process, read from /proc."""
    pid = json.loads(pods.status(container_id, verbose=True).info["info"])["pid"]
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return (int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0]),
            {int(g) for g in fields["Groups"].split()})


def reported(pods: Pods, container_id: str) -> tuple[int, int, list[int]]:
    user = pods.status(container_id).status.user.linux
    return user.uid, user.gid, list(user.supplemental_groups)


@pytest.mark.parametrize(("container_policy", "pod_policy", "groups"), [
    (api_pb2.Merge, api_pb2.Merge, [APP, EXTRA_GROUP, REQUESTED_GROUP]),  # the default
    (api_pb2.Strict, api_pb2.Merge, [APP, REQUESTED_GROUP]),
    (api_pb2.Merge, api_pb2.Strict, [APP, REQUESTED_GROUP]),  # the pod's Strict holds for its containers
    (api_pb2.Strict, api_pb2.Strict, [APP, REQUESTED_GROUP]),  # kubelet's: both from the pod's policy
], ids=["merge", "strict", "strict-pod", "strict-both"])
def test_supplemental_groups_policy(pods: Pods, registry: Registry, push_client: RegistryClient,
                                    container_policy: int, pod_policy: int, groups: list[int]) -> None:
    ref = pulled(pods, registry, push_client, "groups", image_with(group=GROUP_WITH_EXTRA))
    pod = pods.pod("groups", supplemental_groups_policy=pod_policy)
    sc = api_pb2.LinuxContainerSecurityContext(run_as_user=api_pb2.Int64Value(value=APP),
                                               supplemental_groups=[REQUESTED_GROUP],
                                               supplemental_groups_policy=container_policy)  # type: ignore[arg-type]
    container_id = pods.run(pod, pods.config("groups", "sleep", "1000", image__image=ref,
                                             linux__security_context=sc))
    assert process_groups(pods, container_id) == (APP, APP, set(groups))
    assert reported(pods, container_id) == (APP, APP, groups)
    # An exec'd process gets the first one's groups.
    assert sorted(map(int, pods.exec(container_id, "id", "-G").stdout.split())) == sorted(groups)
    assert reported(pods, stop(pods, container_id).id) == (APP, APP, groups)  # still there once exited


def test_strict_with_the_images_user_and_a_run_as_group(pods: Pods, registry: Registry,
                                                        push_client: RegistryClient) -> None:
    ref = pulled(pods, registry, push_client, "groups", image_with(group=GROUP_WITH_EXTRA))
    pod = pods.pod("group-given")
    sc = api_pb2.LinuxContainerSecurityContext(run_as_username="app", run_as_group=api_pb2.Int64Value(value=3000),
                                               supplemental_groups_policy=api_pb2.Strict)
    strict = pods.run(pod, pods.config("strict", "sleep", "1000", image__image=ref, linux__security_context=sc))
    assert process_groups(pods, strict) == (APP, 3000, {3000})
    assert reported(pods, strict) == (APP, 3000, [3000])
    root = pods.run(pod, pods.config("root", "sleep", "1000", image__image=ref))  # the image's user: root
    assert process_groups(pods, root) == (0, 0, {0})
    assert reported(pods, root) == (0, 0, [0])
