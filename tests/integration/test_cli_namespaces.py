"""``hawser -n NAME`` (or $HAWSER_NAMESPACE) works in one namespace of the
store, as ``nerdctl -n`` does: images and containers of one namespace are not
another's, and the blobs they share are stored once."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.conftest import Env
from tests.support.images import BuiltImage

pytestmark = pytest.mark.integration


def names(env: Env, *args: str, environ: dict[str, str] | None = None) -> list[str]:
    out = env.cli(*args, "images", "--format", "json", env=environ).stdout
    return sorted(i["name"] for i in json.loads(out))


def test_namespaces_keep_images_and_containers_apart(overlay_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    env = overlay_env
    ref, _ = busybox
    env.cli("pull", "--plain-http", "-q", ref)
    assert names(env) == [ref]
    assert names(env, "-n", "team-a") == []
    env.cli("-n", "team-a", "pull", "--plain-http", "-q", ref)
    assert names(env, "--namespace", "team-a") == [ref] == names(env, environ={"HAWSER_NAMESPACE": "team-a"})
    blobs = os.listdir(os.path.join(env.root, "content", "blobs", "sha256"))
    assert len(blobs) == len(set(blobs))  # one copy, recorded in both namespaces

    running = env.cli("-n", "team-a", "run", "-d", "--name", "web", ref, "sleep", "1000").stdout.strip()
    try:
        assert env.cli("-n", "team-a", "ps", "-q", "--no-trunc").stdout.split() == [running]
        assert env.cli("ps", "-q", "--no-trunc").stdout.split() == []
        # The same name is free in another namespace.
        other = env.cli("run", "-d", "--name", "web", ref, "sleep", "1000").stdout.strip()
        env.cli("rm", "-f", other)
    finally:
        env.cli("-n", "team-a", "rm", "-f", running)
    env.cli("-n", "team-a", "rmi", ref)
    assert names(env) == [ref] and names(env, "-n", "team-a") == []
    bad = env.cli("-n", "not valid", "images", check=False)
    assert bad.returncode != 0 and "invalid namespace" in bad.stderr
