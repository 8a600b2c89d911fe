"""Hostile layers pulled through the real CLI: each tries to write outside the
snapshot (a ``..`` name, a symlinked parent planted by the same or an earlier
layer, a hardlink to a host file) and must fail the pull with an error naming
the entry, leaving the host untouched and nothing of the image in the store."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hawser.registry import RegistryClient
from tests.integration.conftest import Env
from tests.support.host import unmount_under
from tests.support.images import build_image, push_image
from tests.support.layers import LayerBuilder, busybox_layers
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    """A host directory the layers aim at; it must stay as it is."""
    path = tmp_path / "host-target"
    path.mkdir()
    (path / "secret").write_text("host data\n")
    yield path


def _dotdot(t: Path) -> list[bytes]:
    return [LayerBuilder().add_file("../" * 12 + str(t).lstrip("/") + "/pwned", b"x").build()]


def _symlink_same_layer(t: Path) -> list[bytes]:
    return [LayerBuilder().add_symlink("evil", str(t)).add_file("evil/pwned", b"x").build()]


def _symlink_earlier_layer(t: Path) -> list[bytes]:
    return [LayerBuilder().add_symlink("evil", str(t)).build(),
            LayerBuilder().add_file("evil/pwned", b"x").build()]


def _symlink_relative(t: Path) -> list[bytes]:
    return [LayerBuilder().add_symlink("evil", "../" * 12 + str(t).lstrip("/")).build(),
            LayerBuilder().add_file("evil/pwned", b"x").build()]


def _hardlink_absolute(t: Path) -> list[bytes]:
    return [LayerBuilder().add_hardlink("stolen", str(t / "secret")).build()]


def _hardlink_through_symlink(t: Path) -> list[bytes]:
    return [LayerBuilder().add_symlink("evil", str(t)).add_hardlink("stolen", "evil/secret").build()]


THROUGH_SYMLINK = ("'evil' is a symlink", "refusing to write through it")
# Each case and what its error must say.
CASES: dict[str, tuple[Callable[[Path], list[bytes]], tuple[str, ...]]] = {
    "dotdot": (_dotdot, ("points outside the root",)),
    "symlink-same-layer": (_symlink_same_layer, THROUGH_SYMLINK),
    "symlink-earlier-layer": (_symlink_earlier_layer, THROUGH_SYMLINK),
    "symlink-relative": (_symlink_relative, THROUGH_SYMLINK),
    # An absolute link target is taken inside the tree, where there is no such file.
    "hardlink-absolute": (_hardlink_absolute, ("layer entry 'stolen' links to", "/secret', which does not exist")),
    "hardlink-through-symlink": (_hardlink_through_symlink, THROUGH_SYMLINK),
}


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_layer_is_refused(case: str, snapshotter: str, registry: Registry, push_client: RegistryClient,
                                  tmp_path: Path, target: Path) -> None:
    layers, errors = CASES[case]
    image = build_image([*busybox_layers(), *layers(target)])
    ref = f"{registry.host}/test/hostile-{case}:{secrets.token_hex(4)}"
    push_image(push_client, ref, image, tag=ref.rsplit(":", 1)[1])
    env = Env(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter=snapshotter)
    try:
        proc = env.cli("pull", "--plain-http", "-q", ref, check=False)
        assert proc.returncode == 1, proc.stderr
        assert all(e in proc.stderr for e in errors), proc.stderr
        assert sorted(os.listdir(target)) == ["secret"]
        assert (target / "secret").read_text() == "host data\n"
        assert os.stat(target / "secret").st_nlink == 1
        assert env.cli("images", "-q").stdout.strip() == ""
    finally:
        unmount_under(str(tmp_path))
