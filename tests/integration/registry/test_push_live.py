"""``hawser push`` and ``hawser tag`` against real docker-registries (no auth,
htpasswd, bearer tokens): a multi-layer image pushed to an empty registry,
pulled back by hawser into a fresh store and inspected by skopeo with the same
digests; a second push that uploads nothing; a push to another repository of
the same registry that mounts every blob; a push that survives the registry's
death mid-upload and resumes where the registry's storage left it; errors in
one line."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_images import USERS
from tests.integration.conftest import Env, one_line
from tests.support.failpoints import failpoint_env, fired
from tests.support.host import remove_store_cgroups, unmount_under
from tests.support.images import build_image, push_image, push_index
from tests.support.registry_fixtures import Registry
from tests.support.registry_server import REGISTRY_BINARY, RegistryHandle, free_port, start_registry

from hawser.oci import Digest, Platform, parse_reference
from hawser.registry import RegistryClient, RegistryOptions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (scripts/setup.sh)"),
]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Env, Env]]:
    """Two fresh overlayfs stores: the one that pushes, and the one that pulls back."""
    envs = tuple(Env(root=str(tmp_path / f"{n}/root"), state=str(tmp_path / f"{n}/state"), snapshotter="overlayfs")
                 for n in ("a", "b"))
    yield envs[0], envs[1]
    unmount_under(str(tmp_path))
    for env in envs:
        remove_store_cgroups(env.root)


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> dict[str, str]:
    """The environment of a CLI that logs in to ``host`` as ``user``."""
    directory = tmp_path / f"docker-{user}-{secrets.token_hex(3)}"
    directory.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(directory)}


def _push(env: Env, *args: str, auth: dict[str, str] | None = None) -> dict[str, Any]:
    proc = env.cli("push", "--plain-http", "--format", "json", *args, env=auth)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _skopeo(*args: str, creds: str | None = None) -> bytes:
    cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false", *args]
    if creds:
        cmd[2:2] = ["--creds", creds]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_push_pull_back_second_push_and_mount(auth: str, stores: tuple[Env, Env], tmp_path: Path,
                                              busybox: tuple[str, Any], registry: Registry) -> None:
    source_ref, image = busybox
    pusher, puller = stores
    pusher.cli("pull", "--plain-http", "-q", source_ref)
    with start_registry(tmp_path, auth=auth, users=USERS) as reg:  # type: ignore[arg-type]
        alice = _docker_config(tmp_path, reg.host, "alice", USERS["alice"])
        dest = f"{reg.host}/team/app:v1"

        # An empty registry: every blob goes up, then the manifest under the tag.
        first = _push(pusher, source_ref, dest, auth=alice)
        blobs = {b["Digest"]: b for b in first["Blobs"]}
        assert set(blobs) == {str(image.config_desc.digest), *(str(d.digest) for d, _ in image.layers)}
        assert {b["How"] for b in blobs.values()} == {"uploaded"}
        assert sum(b["Sent"] for b in blobs.values()) == image.config_desc.size + sum(d.size for d, _ in image.layers)
        assert first["Digest"] == str(image.manifest_desc.digest)
        assert (first["ManifestsPushed"], first["ManifestsPresent"]) == (1, 0)

        # Pulled back by hawser, into a store of its own: the same image.
        puller.cli("pull", "--plain-http", "-q", dest, env=alice)
        back = json.loads(puller.cli("image", "inspect", dest).stdout)
        back = back[0] if isinstance(back, list) else back
        assert back["ManifestDigest"] == str(image.manifest_desc.digest)
        assert back["Id"] == str(image.config_desc.digest)

        # And by skopeo: the manifest's and the config's bytes are the ones pushed.
        creds = f"alice:{USERS['alice']}"
        assert _skopeo(f"docker://{dest}", creds=creds) == image.manifest
        assert _skopeo("--config", f"docker://{dest}", creds=creds) == image.config

        # A second push sends nothing: HEADs only.
        again = _push(pusher, source_ref, dest, auth=alice)
        assert {b["How"] for b in again["Blobs"]} == {"exists"}
        assert sum(b["Sent"] for b in again["Blobs"]) == 0
        assert (again["ManifestsPushed"], again["ManifestsPresent"]) == (0, 1)

        # Another repository of the same registry: every blob mounted from team/app
        # (the store remembers where it pushed them), nothing uploaded.
        other = f"{reg.host}/other/app:v2"
        assert pusher.cli("tag", source_ref, other).stdout.strip() == other
        mounted = _push(pusher, other, auth=alice)
        assert {(b["How"], b["MountedFrom"]) for b in mounted["Blobs"]} == {("mounted", "team/app")}
        assert sum(b["Sent"] for b in mounted["Blobs"]) == 0
        assert mounted["Digest"] == str(image.manifest_desc.digest)
        assert _skopeo(f"docker://{other}", creds=creds) == image.manifest
        # A store that pulled the image from team/app knows it by that name: it mounts from there too.
        from_pull = _push(puller, dest, f"{reg.host}/third/app:v3", auth=alice)
        assert {(b["How"], b["MountedFrom"]) for b in from_pull["Blobs"]} == {("mounted", "team/app")}
        if reg.token_server is not None:
            # The mount asked the token server for pull on the source repository too.
            assert any("repository:team/app:pull" in s for t in reg.token_server.issued for s in t.scopes)


def test_tag(overlay_env: Env, busybox: tuple[str, Any]) -> None:
    source_ref, image = busybox
    env = overlay_env
    env.cli("pull", "--plain-http", "-q", source_ref)
    target = "127.0.0.1:1/renamed/app:v1"
    assert env.cli("tag", source_ref, target).stdout.strip() == target
    shown = json.loads(env.cli("image", "inspect", target).stdout)
    shown = shown[0] if isinstance(shown, list) else shown
    assert shown["ManifestDigest"] == str(image.manifest_desc.digest)

    # A short target is normalised as pull names images; an ID names the source too.
    image_id = str(image.config_desc.digest)
    assert env.cli("tag", image_id[:19], "127.0.0.1:1/short").stdout.strip() == "127.0.0.1:1/short:latest"

    # Taken names are refused unless --force; unknown sources are NotFound.
    line = one_line(env.cli("tag", source_ref, target, check=False))
    assert "exists already" in line and "--force" in line
    env.cli("tag", "--force", source_ref, target)
    line = one_line(env.cli("tag", "127.0.0.1:1/no/such:image", "127.0.0.1:1/x:y", check=False))
    assert "not found" in line


def _restart(reg: RegistryHandle, proc_env: dict[str, str]) -> None:
    """Start the registry again on its port, config (its http secret: upload
    URLs stay valid) and storage."""
    with open(reg.log_path, "ab") as log:
        reg.process = subprocess.Popen([REGISTRY_BINARY, "serve", str(reg.root / "config.yml")],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=1)
        try:
            conn.request("GET", "/v2/")
            if conn.getresponse().status in (200, 401):
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError(f"registry did not come back:\n{reg.log()[-2000:]}")


def _big_layer(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/random.bin")
        info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buf.getvalue()


def test_push_resumes_after_the_registry_dies_mid_upload(overlay_env: Env, tmp_path: Path, registry: Registry,
                                                         push_client: RegistryClient,
                                                         plain_registry: RegistryHandle) -> None:
    env = overlay_env
    image = build_image([_big_layer(5 << 20), _big_layer(1000)])
    source = f"{registry.host}/push-test/big-{secrets.token_hex(4)}:v1"
    push_image(push_client, source, image, tag="v1")
    env.cli("pull", "--plain-http", "-q", source)
    big = image.layers[0][0]

    # Chunks of 1 MiB: the big layer in 6 PATCHes; after the 2nd one's answer
    # the push sleeps a second, the registry is killed, and comes back later.
    log = tmp_path / "failpoints.log"
    dest = f"{plain_registry.host}/resumed/app:v1"
    proc = subprocess.Popen(
        env._argv(("push", "--plain-http", "--chunk-size", "1m", "--format", "json", source, dest)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **failpoint_env("push.upload.after-chunk=sleep:1@2", log)})
    try:
        deadline = time.monotonic() + 60
        while not fired(log):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        assert plain_registry.process is not None
        plain_registry.process.kill()
        plain_registry.process.wait(timeout=5)
        # The push wakes after a second to a dead registry, fails and backs off, then finds it back.
        time.sleep(2.5)
        _restart(plain_registry, {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")})
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out)
    by_digest = {b["Digest"]: b for b in result["Blobs"]}
    pushed = by_digest[str(big.digest)]
    # Resumed where the registry's storage stood: no byte of the big layer sent twice.
    assert pushed["How"] == "uploaded" and pushed["Resumes"] >= 1 and pushed["Restarts"] == 0, pushed
    assert pushed["Sent"] == big.size and pushed["Chunks"] == 6, pushed
    assert fired(log) == [("push.upload.after-chunk", "sleep:1")]

    # What the registry holds is the image, byte for byte.
    with RegistryClient(RegistryOptions(plain_http=True, docker_config=None)) as client:
        ref = parse_reference(dest)
        assert client.resolve(ref).data == image.manifest
        with client.fetch_blob(ref, big) as stream:
            assert Digest.of(b"".join(stream)) == big.digest


def test_index_with_one_platform_stored(overlay_env: Env, registry: Registry, push_client: RegistryClient,
                                        plain_registry: RegistryHandle) -> None:
    """A pull keeps only its platform's manifest of an index: the index cannot go
    up whole (one line says why and what to do); --platform pushes that manifest."""
    env = overlay_env
    here = build_image([_big_layer(1000)], cmd=("/bin/here",))
    other = build_image([_big_layer(1000)], platform=Platform("linux", "s390x"), cmd=("/bin/there",))
    source = f"{registry.host}/push-test/multi-{secrets.token_hex(4)}:v1"
    push_index(push_client, source, [here, other], tag="v1")
    env.cli("pull", "--plain-http", "-q", source)

    dest = f"{plain_registry.host}/one/platform:v1"
    line = one_line(env.cli("push", "--plain-http", source, dest, check=False))
    assert "1 of them not in the store (linux/s390x)" in line and "--platform" in line, line
    result = _push(env, "--platform", str(here.platform), source, dest)
    assert result["Digest"] == str(here.manifest_desc.digest)
    assert _skopeo(f"docker://{dest}") == here.manifest
    line = one_line(env.cli("push", "--plain-http", "--platform", "windows/amd64", source, dest, check=False))
    assert "no manifest for platform windows/amd64" in line, line


def test_errors_are_one_line(overlay_env: Env, tmp_path: Path, busybox: tuple[str, Any],
                             htpasswd_registry: RegistryHandle) -> None:
    source_ref, _ = busybox
    env = overlay_env
    env.cli("pull", "--plain-http", "-q", source_ref)

    # Auth refused: a wrong password, and no credentials at all.
    wrong = _docker_config(tmp_path, htpasswd_registry.host, "alice", "wrong")
    line = one_line(env.cli("push", "--plain-http", source_ref, f"{htpasswd_registry.host}/team/app:v1",
                            env=wrong, check=False))
    assert "denied push access to repository team/app" in line and "credentials" in line, line
    line = one_line(env.cli("push", "--plain-http", source_ref, f"{htpasswd_registry.host}/team/app:v1",
                            env={"DOCKER_CONFIG": str(tmp_path / "nowhere")}, check=False))
    assert "denied push access" in line and "log in" in line, line

    # The registry down: nothing listens on the port.
    down = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    line = one_line(env.cli("push", "--plain-http", source_ref, f"{down}/team/app:v1", check=False))
    assert "connection refused" in line and down in line, line
    assert time.monotonic() - started < 20

    # An image the store lacks, a destination that is no reference.
    line = one_line(env.cli("push", "--plain-http", "127.0.0.1:1/no/such:image", check=False))
    assert "not found" in line, line
    line = one_line(env.cli("push", "--plain-http", source_ref, "127.0.0.1:1/Bad Name", check=False))
    assert "invalid reference" in line, line
