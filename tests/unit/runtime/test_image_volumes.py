"""Image volumes without a daemon: the sub path resolved beneath the image's
root (as containerd's os.OpenInRoot does), the CRI's Mount.image planned as an
image volume, and the bind the spec gets for one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2
from tests.support.cri_fakes import FakeFiles, make_sandbox

from hawser.cri._container_options import mount_from_json, mount_json, plan_container
from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.runtime._image_volumes import VOLUME_FLAGS, resolve_beneath, view_key, volume_dir
from hawser.runtime._options import BindMount, ContainerOptions, HostLimits, ImageVolume
from hawser.runtime._spec import build_spec


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """An image's tree: directories, a file, and symlinks inside and out."""
    root = tmp_path / "view"
    (root / "data" / "sub" / "deeper").mkdir(parents=True)
    (root / "data" / "file.txt").write_text("a file")
    (root / "data" / "link").symlink_to("sub")
    (root / "data" / "deep-link").symlink_to("sub/deeper/../deeper")
    (root / "data" / "up").symlink_to("../..")  # climbs out of the image
    (root / "data" / "abs").symlink_to("/etc")  # the host's, seen from here; the container's, seen from in there
    (root / "data" / "to-file").symlink_to("file.txt")
    (root / "data" / "loop").symlink_to("loop")
    (root / "outside").mkdir()
    return root


@pytest.mark.parametrize(("sub_path", "expected"), [
    ("data", "data"),
    ("data/sub", "data/sub"),
    ("./data//sub/", "data/sub"),
    ("data/link", "data/sub"),  # a symlink inside the image is followed
    ("data/link/deeper", "data/sub/deeper"),
    ("data/deep-link", "data/sub/deeper"),
    ("data/sub/../sub", "data/sub"),  # ".." that stays inside
    ("data/link/..", "data"),  # ".." after a symlink: the parent of its target
    (".", ""),
])
def test_a_sub_path_resolves_inside_the_image(image_root: Path, sub_path: str, expected: str) -> None:
    assert resolve_beneath(str(image_root), sub_path, image="img") == os.path.join(str(image_root), *filter(None, [expected]))


@pytest.mark.parametrize(("sub_path", "message"), [
    ("data/nope", "sub path 'data/nope' does not exist in image img"),
    ("data/sub/nope/deeper", "sub path 'data/sub/nope/deeper' does not exist in image img"),
    ("..", "sub path '..' leaves image img"),
    ("data/../../outside", "leaves image img"),
    ("data/up", "leaves image img"),
    ("data/up/view/outside", "leaves image img"),  # even where it would come back in
    ("data/abs", "data/abs is an absolute symlink (to /etc)"),
    ("/data", "must be relative"),
    ("data/file.txt", "is not a directory"),
    ("data/to-file", "is not a directory"),
    ("data/file.txt/x", "is not a directory"),
    ("data/loop", "too many levels of symbolic links"),
])
def test_a_bad_sub_path_is_refused(image_root: Path, sub_path: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_beneath(str(image_root), sub_path, image="img")
    assert message in str(caught.value)


def test_names_of_a_volumes_snapshot_and_mount() -> None:
    assert view_key("c" * 64, 2) == f"image-volume-{'c' * 64}-2"
    assert volume_dir("/run/hawser/containers/abc", 0) == "/run/hawser/containers/abc/image-volumes/0"


# --- the CRI's Mount.image ------------------------------------------------------------------


def _config(*mounts: api_pb2.Mount) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="app"),
                                   image=api_pb2.ImageSpec(image="127.0.0.1:5000/app:v1"), mounts=list(mounts))


def test_a_mount_of_an_image_is_planned_as_an_image_volume() -> None:
    volume = api_pb2.Mount(container_path="/data/", image=api_pb2.ImageSpec(image="127.0.0.1:5000/data:v1"),
                           image_sub_path="share/doc", readonly=True)
    # It also takes the place of a pod file: /etc/hostname is not bound over it.
    hostname = api_pb2.Mount(container_path="/etc/hostname", image=api_pb2.ImageSpec(image="sha256:" + "a" * 64),
                             readonly=True)
    bind = api_pb2.Mount(container_path="/srv", host_path="/srv/data")
    plan = plan_container(_config(volume, hostname, bind), make_sandbox(), files=FakeFiles(existing={"/srv/data"}))
    assert plan.options.image_volumes == (
        ImageVolume(image="127.0.0.1:5000/data:v1", destination="/data", sub_path="share/doc"),
        ImageVolume(image="sha256:" + "a" * 64, destination="/etc/hostname"))
    assert [m.destination for m in plan.options.mounts] == ["/srv", "/etc/resolv.conf", "/dev/shm"]
    # The record keeps the request's mounts, image and sub path included, for ContainerStatus.
    assert mount_from_json(mount_json(volume)) == volume
    assert mount_from_json(mount_json(bind)) == bind and "image" not in mount_json(bind)


def test_the_bind_of_an_image_volume_is_read_only_and_noexec(tmp_path: Path) -> None:
    source = tmp_path / "view"
    source.mkdir()
    image = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=(), cmd=("sh",))
    options = ContainerOptions(mounts=(BindMount(source=str(source), destination="/data", readonly=True,
                                                 options=VOLUME_FLAGS),))
    host = HostLimits(rlimits={}, min_oom_score_adj=0)
    spec = build_spec(image, options, rootfs=str(tmp_path), host=host)
    mount = next(m for m in spec["mounts"] if m["destination"] == "/data")
    assert mount == {"destination": "/data", "type": "bind", "source": str(source),
                     "options": ["rbind", "ro", "rprivate", "nosuid", "nodev", "noexec"]}
