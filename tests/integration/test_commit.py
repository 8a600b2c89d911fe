"""hawser commit and hawser diff with real containers (runc, conmon, overlayfs):
a container's changes become an image that runs, and diff lists them."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.oci import Digest
from tests.integration.conftest import Env, container_env, one_line
from tests.support.images import BuiltImage

pytestmark = pytest.mark.integration

# On the test image (tests/support/layers.py): /etc/layer3 and /etc/motd from its layers,
# /opt/app/data with a.txt and b.txt.
CHANGES = ("echo new > /added.txt; echo changed >> /etc/motd; rm /etc/layer3; "
           "rm -rf /opt/app/data; mkdir /opt/app/data; echo only > /opt/app/data/only.txt")


@pytest.fixture(params=["overlayfs", "native"])
def any_ctr(request: pytest.FixtureRequest, tmp_path: Path, busybox: tuple[str, BuiltImage]) -> Iterator[tuple[Env, str]]:
    """As ``ctr``, on either snapshotter (the store's commands, its teardown too, use the one chosen)."""
    ref, _ = busybox
    with container_env(tmp_path, ref, "/hawser-test") as env:
        if request.param == "native":
            env.snapshotter = "native"
            env.cli("pull", "--plain-http", "-q", ref)
        yield env, ref


def _image(env: Env, name: str) -> dict[str, object]:
    info = json.loads(env.cli("image", "inspect", name).stdout)[0]
    assert isinstance(info, dict)
    return info


def _top_layer_names(env: Env, name: str) -> list[str]:
    store = env.store()
    try:
        from hawser.images import ImageService

        images = ImageService(store)
        detail = images.inspect(images.resolve_name(name))
        with store.content.open(detail.manifest.layers[-1].digest) as blob:
            data = blob.read()
    finally:
        store.close()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return tar.getnames()


def test_commit_then_run_sees_the_changes_and_diff_lists_them(any_ctr: tuple[Env, str]) -> None:
    env, ref = any_ctr
    env.cli("run", "--name", "c1", ref, "sh", "-c", CHANGES)
    assert env.cli("diff", "c1").stdout.splitlines() == [
        "A /added.txt",
        "C /etc",
        "D /etc/layer3",
        "C /etc/motd",
        "C /opt",
        "C /opt/app",
        "C /opt/app/data",
        "D /opt/app/data/a.txt",
        "D /opt/app/data/b.txt",
        "A /opt/app/data/only.txt",
    ]
    out = env.cli("commit", "-m", "my change", "c1", "committed:1").stdout.split()
    assert out[0] == "docker.io/library/committed:1" and out[1].startswith("sha256:")
    info = _image(env, "committed:1")
    base = _image(env, ref)
    rootfs, base_rootfs = info["RootFS"], base["RootFS"]
    assert isinstance(rootfs, dict) and isinstance(base_rootfs, dict)
    assert rootfs["DiffIDs"][:-1] == base_rootfs["DiffIDs"] and len(rootfs["Layers"]) == len(base_rootfs["Layers"]) + 1
    assert info["Layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"  # the manifest's
    # overlay's whiteout and opaque dir are OCI whiteouts in the layer (native's tree
    # comparison writes one whiteout per name deleted).
    names = _top_layer_names(env, "committed:1")
    assert "etc/.wh.layer3" in names and "added.txt" in names and "opt/app/data/only.txt" in names
    if env.snapshotter == "overlayfs":
        assert "opt/app/data/.wh..wh..opq" in names
    else:
        assert {"opt/app/data/.wh.a.txt", "opt/app/data/.wh.b.txt"} <= set(names)
    # The layer's snapshot is committed on the image's chain: run needs no unpack.
    proc = env.cli("run", "--rm", "committed:1", "sh", "-c",
                   "cat /added.txt; tail -n1 /etc/motd; ls /etc/layer3 2>&1; ls /opt/app/data")
    lines = proc.stdout.splitlines()
    assert lines[0] == "new" and lines[1] == "changed" and "No such file" in lines[2] and lines[3:] == ["only.txt"]
    # The base image is untouched.
    assert env.cli("run", "--rm", ref, "ls", "/opt/app/data").stdout.split() == ["a.txt", "b.txt"]


def test_change_instructions_are_applied(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "--name", "c2", ref, "sh", "-c", "echo hello > /x")
    env.cli("commit", "--change", 'CMD ["cat","/x"]', "--change", 'ENV GREETING="hi there" OTHER=1',
            "--change", "WORKDIR /opt", "--change", "WORKDIR app", "--change", "USER 1000:1000",
            "--change", "LABEL team=core", "--change", "EXPOSE 8080 53/udp",
            "--author", "Ann <ann@example.com>", "-m", "with changes", "c2", "changed")
    config = _image(env, "changed")["Config"]
    assert isinstance(config, dict)
    assert config["Cmd"] == ["cat", "/x"] and config["WorkingDir"] == "/opt/app" and config["User"] == "1000:1000"
    assert "GREETING=hi there" in config["Env"] and "OTHER=1" in config["Env"]
    assert config["Labels"] == {"team": "core"} and sorted(config["ExposedPorts"]) == ["53/udp", "8080/tcp"]
    assert _image(env, "changed")["Author"] == "Ann <ann@example.com>"
    assert env.cli("run", "--rm", "changed").stdout == "hello\n"
    proc = env.cli("run", "--rm", "changed", "sh", "-c", 'echo "$GREETING"; pwd; id -u')
    assert proc.stdout.splitlines() == ["hi there", "/opt/app", "1000"]
    # The history entry carries the message and the author; the shell form of ENTRYPOINT.
    store = env.store()
    try:
        from hawser.images import ImageService

        detail = ImageService(store).inspect("docker.io/library/changed:latest")
        raw = json.loads(store.content.read_all(detail.config_digest))
    finally:
        store.close()
    last = raw["history"][-1]
    assert last["comment"] == "with changes" and last["author"] == "Ann <ann@example.com>"
    assert last["created_by"] == "sh -c echo hello > /x" and last["created"] == raw["created"]
    env.cli("commit", "--change", "ENTRYPOINT echo from entrypoint", "c2", "entry")
    assert env.cli("run", "--rm", "entry").stdout == "from entrypoint\n"


def test_commit_of_a_running_container_pauses_and_resumes_it(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", "--name", "busy", ref, "sh", "-c",
                  # a rename, not `echo > /tick`: the pause may freeze it between truncate and write
                  "i=0; while :; do i=$((i+1)); echo $i > /tick.new; mv /tick.new /tick; sleep 0.05; done"
                  ).stdout.strip()

    def state() -> str:
        status = json.loads(env.cli("inspect", id_).stdout)[0]["State"]["Status"]
        assert isinstance(status, str)
        return status

    proc = subprocess.Popen(env._argv(("commit", "busy", "snap")), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HAWSER_FAILPOINTS": "commit.paused=sleep:3"})
    try:
        deadline = time.monotonic() + 20
        while state() != "paused":
            assert proc.poll() is None and time.monotonic() < deadline, "commit ended or never paused the container"
            time.sleep(0.1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert state() == "running"
    assert env.cli("run", "--rm", "snap", "cat", "/tick").stdout.strip().isdigit()
    # A failure while paused resumes it all the same; --no-pause leaves it running throughout.
    failed = env.cli("commit", "busy", "snap2", check=False, env={"HAWSER_FAILPOINTS": "commit.paused=raise"})
    assert failed.returncode != 0 and "commit.paused" in one_line(failed)
    assert state() == "running"
    env.cli("commit", "--no-pause", "busy", "snap2", env={"HAWSER_FAILPOINTS": "commit.paused=sleep:1"})
    assert state() == "running"
    # A container its owner paused stays paused.
    env.cli("pause", "busy")
    env.cli("commit", "busy", "snap3")
    assert state() == "paused"
    env.cli("unpause", "busy")


def test_commit_to_an_existing_name_moves_it(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "--name", "one", ref, "sh", "-c", "echo one > /which")
    env.cli("run", "--name", "two", ref, "sh", "-c", "echo two > /which")
    first = env.cli("commit", "-q", "one", "moving:v1").stdout.strip()
    second = env.cli("commit", "-q", "two", "moving:v1").stdout.strip()
    assert first != second and Digest(second)
    assert _image(env, "moving:v1")["Id"] == second
    assert len([line for line in env.cli("images").stdout.splitlines() if "moving" in line]) == 1
    assert env.cli("run", "--rm", "moving:v1", "cat", "/which").stdout == "two\n"
    # Nothing changed: an empty layer, an image all the same.
    env.cli("run", "--name", "none", ref, "true")
    assert env.cli("diff", "none").stdout == ""
    env.cli("commit", "none", "unchanged")
    assert env.cli("run", "--rm", "unchanged", "cat", "/etc/motd").returncode == 0


def test_bad_change_and_unknown_container_are_refused(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "--name", "c3", ref, "true")
    for change, words in (("FROM scratch", "unknown instruction 'FROM'"), ("CMD", "invalid --change"),
                          ("EXPOSE http", "invalid port"), ("ENV", "invalid --change")):
        line = one_line(env.cli("commit", "--change", change, "c3", "bad", check=False))
        assert words in line, line
    assert "bad" not in env.cli("images").stdout
    proc = env.cli("commit", "nosuch", "bad", check=False)
    assert "no such container: nosuch" in one_line(proc)
    assert "no such container: nosuch" in one_line(env.cli("diff", "nosuch", check=False))
