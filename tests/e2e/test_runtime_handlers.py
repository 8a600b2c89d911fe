"""Runtime handlers and recursive read-only mounts over hawserd's CRI socket
(issue 16): Status lists each configured handler with its features, as
kubelet 1.30+ reads them; RunPodSandbox's runtime_handler picks the runtime
(binary, root, flags) of the pod's containers, kept across a restart; a
recursive read-only mount makes the submounts of a volume read-only too."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.cri_pods import CGROUP_PARENT, Pods

RUNC_B = "runc-b"


def configure(pods: Pods, text: str) -> None:
    """hawserd restarted with ``text`` added to its config file."""
    hawserd = pods.hawserd
    assert hawserd.stop() == 0
    current = hawserd.config_file.read_text()
    table = '[runtime]\ndefault_network = "none"\n'  # the test config's: a second [runtime] is invalid TOML
    if "[runtime]\n" in text and table in current:
        current, text = current.replace(table, ""), text.replace("[runtime]\n", table)
    hawserd.config_file.write_text(current + text)
    hawserd.start()


def pod(pods: Pods, name: str, handler: str) -> tuple[str, api_pb2.PodSandboxConfig]:
    """A pod run with ``handler`` (as Pods.pod, which names none)."""
    uid = secrets.token_hex(8)
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="e2e", uid=uid, attempt=0),
        hostname=name, log_directory=str(pods.logs / f"e2e_{name}_{uid}"),
        linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{CGROUP_PARENT}/{uid}"))
    request = api_pb2.RunPodSandboxRequest(config=config, runtime_handler=handler)
    pod_id = str(pods.rt.RunPodSandbox(request).pod_sandbox_id)
    pods.pods.append(pod_id)
    return pod_id, config


def handlers(pods: Pods) -> dict[str, tuple[bool, bool]]:
    """Status' runtime handlers: name -> (recursive read-only mounts, user namespaces), in order."""
    response = pods.rt.Status(api_pb2.StatusRequest())
    assert response.features.supplemental_groups_policy  # still announced beside them
    return {h.name: (h.features.recursive_read_only_mounts, h.features.user_namespaces)
            for h in response.runtime_handlers}


def host_has_rro() -> bool:
    """What kubelet's doc says to check: Linux >= 5.12 and "rro" in `runc features`' mountOptions."""
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
    out = subprocess.run(["runc", "features"], capture_output=True, text=True, check=False).stdout
    return release >= (5, 12) and "rro" in (json.loads(out or "{}").get("mountOptions") or [])


def in_container(pods: Pods, container_id: str, script: str) -> tuple[int, str]:
    response = pods.exec(container_id, "sh", "-c", script)
    return response.exit_code, (response.stdout + response.stderr).decode().strip()


# --- Status --------------------------------------------------------------------------------


def test_status_lists_each_handler_with_its_features(pods: Pods, tmp_path: Path) -> None:
    rro = host_has_rro()
    # User namespaces: runc's features list "user" and this kernel (6.18) makes idmapped mounts.
    assert list(handlers(pods).items()) == [("", (rro, True)), ("runc", (rro, True))]
    # A runtime without runc's `features` command (a wrapper here; crun 1.8 has none either).
    wrapper = tmp_path / "no-features-runc"
    wrapper.write_text("#!/bin/sh\n[ \"$3\" = features ] && exit 1\nexec runc \"$@\"\n")
    wrapper.chmod(0o755)
    configure(pods, f'[runtimes.{RUNC_B}]\nbinary = "runc"\n[runtimes.plain]\nbinary = "{wrapper}"\n'
                    '[runtime]\ndefault_runtime = "runc-b"\n')
    # The default first, as "" (kubelet's default handler), then by name after the default's.
    assert list(handlers(pods).items()) == [("", (rro, True)), (RUNC_B, (rro, True)), ("plain", (False, False)),
                                            ("runc", (rro, True))]
    # What the verbose status reports of the config.
    info = json.loads(pods.rt.Status(api_pb2.StatusRequest(verbose=True)).info["config"])
    assert info["runtime"]["default_runtime"] == RUNC_B and sorted(info["runtimes"]) == ["plain", "runc", RUNC_B]


# --- picking a handler ---------------------------------------------------------------------


def test_a_named_handler_runs_and_an_unknown_one_is_refused(pods: Pods) -> None:
    named = pod(pods, "named", "runc")
    box = pods.run(named, pods.config("box", "sleep", "1000"))
    assert in_container(pods, box, "echo hi") == (0, "hi")
    assert (pods.hawserd.state / "runc" / box / "state.json").is_file()
    status = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=named[0])).status
    assert status.runtime_handler == "runc"
    default = pod(pods, "default", "")
    assert pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(
        pod_sandbox_id=default[0])).status.runtime_handler == ""  # as asked

    config = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="x", namespace="e2e", uid="u"))
    code, message = status_code(pods.rt.RunPodSandbox,
                                api_pb2.RunPodSandboxRequest(config=config, runtime_handler="kata"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == 'RunPodSandbox: no runtime for "kata" is configured (hint: configured runtime handlers: runc)'
    assert [p.id for p in pods.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items if p.metadata.name == "x"] \
        == []


def test_a_second_handler_keeps_its_containers_in_its_root_across_a_restart(pods: Pods, tmp_path: Path) -> None:
    root = tmp_path / "runc-b-root"
    configure(pods, f'[runtimes.{RUNC_B}]\nbinary = "runc"\nroot = "{root}"\n'
                    'allowed_annotations = ["keep."]\n')
    # Images are shared by every handler (one snapshotter): a pull for runc-b is the same image.
    pulled = pods.hawserd.client().images.PullImage(api_pb2.PullImageRequest(
        image=api_pb2.ImageSpec(image=pods.image, runtime_handler=RUNC_B)))
    assert pulled.image_ref == pods.image_id
    b = pod(pods, "b", RUNC_B)
    status = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=b[0])).status
    assert status.runtime_handler == RUNC_B
    box = pods.run(b, pods.config("box", "sleep", "1000", annotations={"keep.me": "1", "drop.me": "2"}))
    assert (root / box / "state.json").is_file()  # runc-b's state, not the default runc's
    assert not (pods.hawserd.state / "runc" / box).exists()
    assert in_container(pods, box, "echo in-b") == (0, "in-b")
    # Only the annotations the handler allows reach the OCI spec (the CRI still reports them all).
    verbose = pods.status(box, verbose=True)
    assert json.loads(verbose.info["info"])["runtimeSpec"]["annotations"] == {"keep.me": "1"}
    assert dict(verbose.status.annotations) == {"note": "about box", "keep.me": "1", "drop.me": "2"}

    # The pod's record keeps its handler, each container's record its own: a restarted
    # hawserd finds them where they are, and the pod's new containers go there too.
    assert pods.hawserd.stop() == 0
    pods.hawserd.start()
    assert pods.status(box).status.state == api_pb2.CONTAINER_RUNNING
    assert in_container(pods, box, "echo again") == (0, "again")
    second = pods.run(b, pods.config("second", "sleep", "1000"))
    assert (root / second / "state.json").is_file()
    pods.rt.UpdateContainerResources(api_pb2.UpdateContainerResourcesRequest(
        container_id=second, linux=api_pb2.LinuxContainerResources(cpu_shares=512)))
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=box, timeout=5))
    assert pods.status(box).status.state == api_pb2.CONTAINER_EXITED
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=box))
    assert not (root / box).exists()
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=b[0]))  # stops `second` through runc-b
    assert pods.status(second).status.state == api_pb2.CONTAINER_EXITED
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=b[0]))
    assert list(root.iterdir()) == []


@pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")
def test_crun_is_a_handler_where_the_host_lets_it_run(pods: Pods) -> None:
    configure(pods, '[runtimes.crun]\n')
    assert handlers(pods)["crun"] == (False, False)  # crun 1.8 has no `features` command
    c = pod(pods, "crun", "crun")
    config = pods.config("box", "sleep", "1000")
    try:
        box = pods.run(c, config)
    except grpc.RpcError as exc:
        # Hybrid cgroups (v1 controllers and a v2 mount, as here): crun refuses every container,
        # and its own words reach the caller.
        assert "cgroups in hybrid mode not supported" in (exc.details() or ""), exc.details()  # type: ignore[attr-defined]
        assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
        return
    assert (pods.hawserd.state / "runtimes" / "crun" / box).is_dir()
    assert in_container(pods, box, "echo crun") == (0, "crun")


# --- recursive read-only mounts ------------------------------------------------------------


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A host directory with a tmpfs mounted on its subdirectory ``sub``."""
    top = tmp_path / "volume"
    (top / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "rro-test", str(top / "sub")], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top / "sub")], check=False)


def bind(volume: Path, path: str, **fields: object) -> api_pb2.Mount:
    """A read-only bind of ``volume`` (unless ``readonly`` says otherwise)."""
    return api_pb2.Mount(container_path=path, host_path=str(volume), **{"readonly": True, **fields})  # type: ignore[arg-type]


@pytest.mark.skipif(not host_has_rro(), reason="this kernel or runc cannot make recursive read-only mounts")
def test_a_recursive_read_only_mount_makes_submounts_read_only(pods: Pods, volume: Path) -> None:
    p = pod(pods, "rro", "")
    box = pods.run(p, pods.config("box", "sleep", "1000", mounts=[
        bind(volume, "/rro", recursive_read_only=True), bind(volume, "/ro")]))
    # Both are read-only at the top...
    for path in ("/rro", "/ro"):
        code, said = in_container(pods, box, f"touch {path}/top")
        assert code != 0 and "Read-only file system" in said, (path, said)
    # ...but a plain read-only bind leaves the tmpfs under it writable; the recursive one does not.
    code, said = in_container(pods, box, "touch /rro/sub/x")
    assert code != 0 and "Read-only file system" in said, said
    assert in_container(pods, box, "touch /ro/sub/x && echo written") == (0, "written")
    assert (volume / "sub" / "x").exists() and not (volume / "top").exists()
    spec = json.loads(pods.status(box, verbose=True).info["info"])["runtimeSpec"]
    options = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert options["/rro"] == ["rbind", "ro", "rro", "rprivate"] and "rro" not in options["/ro"]
    reported = {m.container_path: m.recursive_read_only for m in pods.status(box).status.mounts}
    assert reported == {"/rro": True, "/ro": False}


def test_recursive_read_only_mounts_are_refused_clearly(pods: Pods, volume: Path, tmp_path: Path) -> None:
    # A runtime that does not know "rro" (its `features` says so): a wrapper of runc.
    wrapper = tmp_path / "old-runc"
    wrapper.write_text("#!/bin/sh\n[ \"$3\" = features ] && { echo '{\"mountOptions\": [\"ro\"]}'; exit 0; }\n"
                       "exec runc \"$@\"\n")
    wrapper.chmod(0o755)
    configure(pods, f'[runtimes.old]\nbinary = "{wrapper}"\n')
    assert handlers(pods)["old"] == (False, False)
    p = pod(pods, "refused", "")
    old = pod(pods, "old", "old")
    cases = [
        (p, bind(volume, "/a", readonly=False, recursive_read_only=True), "recursive_read_only needs readonly"),
        (p, bind(volume, "/a", recursive_read_only=True, propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER),
         "recursive_read_only needs propagation PROPAGATION_PRIVATE, not PROPAGATION_HOST_TO_CONTAINER"),
        (old, bind(volume, "/a", recursive_read_only=True), "runtime handler 'old' cannot make recursive read-only"),
    ]
    for target, mount, message in cases:
        request = api_pb2.CreateContainerRequest(pod_sandbox_id=target[0], sandbox_config=target[1],
                                                 config=pods.config("bad", "true", mounts=[mount]))
        code, said = status_code(pods.rt.CreateContainer, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message in said, said
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    # The same handler runs plain read-only mounts.
    box = pods.run(old, pods.config("box", "sleep", "1000", mounts=[bind(volume, "/ro")]))
    assert in_container(pods, box, "touch /ro/sub/y && echo ok") == (0, "ok")
