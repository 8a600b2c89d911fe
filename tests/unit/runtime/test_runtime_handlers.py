"""Runtime handlers in the runtime part (issue 16): each handler's runc (binary,
root, flags), its features, its allowed annotations; a container's handler kept
in its record; recursive read-only mounts in the spec and in the CRI's plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from cri_api.v1 import api_pb2
from tests.support.cri_fakes import FakeFiles, make_sandbox

from hawser.config import Config, RuntimeHandlerConfig, parse_config
from hawser.cri._container_options import CRI_MOUNTS, mount_from_json, plan_container
from hawser.cri.types import CriDeps
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.runtime import ContainerManager
from hawser.runtime._options import BindMount, ContainerOptions, HostLimits
from hawser.runtime._runc import Runc, RuntimeFeatures, RuntimeHandler, features_of, runtime_handlers
from hawser.runtime._spec import build_spec

RUNC_FEATURES = json.dumps({"ociVersionMin": "1.0.0", "mountOptions": ["rbind", "ro", "rro", "rprivate"],
                            "linux": {"namespaces": ["mount", "network", "user"]}}).encode()


def fake_runtime(path: Path, features: bytes | None) -> Path:
    """A runtime whose ``features`` prints ``features`` (None: it has no such command, as crun 1.8)."""
    body = ('echo "unknown command $3" >&2; exit 1' if features is None
            else f"cat <<'EOF'\n{features.decode()}\nEOF")
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


# --- features ------------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "release", "rro"), [
    (RUNC_FEATURES, "6.18.44-fc-v1300", True),
    (RUNC_FEATURES, "5.12.0", True),
    (RUNC_FEATURES, "5.11.22-generic", False),  # no mount_setattr
    (json.dumps({"mountOptions": ["ro", "rbind"]}).encode(), "6.1.0", False),  # runc 1.0: no "rro"
    (b"", "6.1.0", False),  # no features command
    (b"not json", "6.1.0", False),
    (b"[1]", "6.1.0", False),
    (RUNC_FEATURES, "weird", False),
])
def test_features_of(output: bytes, release: str, rro: bool) -> None:
    assert features_of(output, kernel_release=release) == RuntimeFeatures(recursive_read_only_mounts=rro,
                                                                          user_namespaces=False)


@pytest.mark.parametrize(("output", "idmapped", "userns"), [
    (RUNC_FEATURES, True, True),
    (RUNC_FEATURES, False, False),  # the kernel makes no idmapped mounts
    (json.dumps({"linux": {"namespaces": ["mount", "network"]}}).encode(), True, False),  # no user namespaces
    (json.dumps({"linux": ["user"]}).encode(), True, False),
    (b"", True, False),
])
def test_user_namespaces_need_the_runtime_and_idmapped_mounts(output: bytes, idmapped: bool, userns: bool) -> None:
    assert features_of(output, kernel_release="6.18.0", idmapped_mounts=idmapped).user_namespaces is userns


def test_features_are_asked_once_of_the_runtime(tmp_path: Path) -> None:
    binary = fake_runtime(tmp_path / "rt", RUNC_FEATURES)
    runc = Runc(str(tmp_path / "root"), str(binary))
    assert runc.features().recursive_read_only_mounts
    binary.unlink()  # a second call does not run it
    assert runc.features().recursive_read_only_mounts
    without = Runc(str(tmp_path / "root"), str(fake_runtime(tmp_path / "crun", None)))
    assert without.features() == RuntimeFeatures()
    assert Runc(str(tmp_path / "root"), "/nonexistent/rt").features() == RuntimeFeatures()


# --- handlers from the config -------------------------------------------------------------


def test_handlers_of_a_config(tmp_path: Path) -> None:
    config = parse_config(f'state = "{tmp_path}"\n[runtimes.runc-b]\nbinary = "runc"\noptions = ["--debug"]\n'
                          '[runtimes.other]\nbinary = "/opt/other"\nroot = "/var/run/other"\n'
                          'allowed_annotations = ["io.x/", "example.com*"]\n')
    handlers = runtime_handlers(config)
    assert sorted(handlers) == ["other", "runc", "runc-b"]
    runc, b, other = handlers["runc"].runc, handlers["runc-b"].runc, handlers["other"].runc
    assert runc.root == f"{tmp_path}/runc" and b.root == f"{tmp_path}/runtimes/runc-b"
    assert b.binary == runc.binary and b.binary.endswith("/runc")  # a name, found on PATH
    assert (other.binary, other.root) == ("/opt/other", "/var/run/other")
    # Every command line: binary, root, the handler's flags, then the command.
    assert b.argv("state", "x") == [b.binary, "--root", b.root, "--debug", "state", "x"]
    assert b.exec_argv("x", "/p.json", tty=False)[:6] == [b.binary, "--root", b.root, "--debug", "exec", "--process"]
    notes = {"io.x/a": "1", "example.com/b": "2", "example.org/c": "3"}
    assert handlers["other"].annotations(notes) == {"io.x/a": "1", "example.com/b": "2"}
    assert handlers["runc"].annotations(notes) == notes  # "*": all, as before
    assert RuntimeHandler(name="n", runc=runc, allowed_annotations=()).annotations(notes) == {}


class _Records:
    namespace = "k8s.io"


def manager(tmp_path: Path, text: str = "") -> ContainerManager:
    config = parse_config(f'root = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n' + text)
    return ContainerManager(config=config, records=cast(Any, _Records()), snapshotter=cast(Any, None),
                            images=cast(Any, None), host=HostLimits(rlimits={}, min_oom_score_adj=-1000))


def record(**config: Any) -> Container:
    return Container(namespace="k8s.io", id="c" * 64, name="c", image="i", image_id="sha256:" + "0" * 64,
                     snapshotter="overlayfs", snapshot_key="k", config=config, labels={}, created_at=0.0)


def test_a_containers_handler_is_in_its_record(tmp_path: Path) -> None:
    m = manager(tmp_path, '[runtimes.runc-b]\n[runtime]\ndefault_runtime = "runc"\n')
    assert m.runc is m.handlers["runc"].runc  # the default's: the CLI's and containerd's API's
    assert m.runc_for(record()) is m.runc  # a record older than handlers
    assert m.runc_for(record(runtime_handler="runc-b")) is m.handlers["runc-b"].runc
    assert m.handler("").name == "runc" and m.handler("runc-b").name == "runc-b"
    with pytest.raises(NotFound) as caught:
        m.handler("kata")
    assert caught.value.message == 'no runtime for "kata" is configured'
    assert caught.value.hint == "configured runtime handlers: runc, runc-b"
    gone = record(runtime_handler="kata")
    with pytest.raises(FailedPrecondition, match="runs with runtime handler 'kata', which is not configured"):
        m.runc_for(gone)
    # Its status says so rather than failing every listing.
    status = m.status(gone)
    assert status.state == "unknown" and "'kata'" in status.reason


def test_create_checks_the_handler_before_anything_is_made(tmp_path: Path) -> None:
    m = manager(tmp_path, f'[runtimes.old]\nbinary = "{fake_runtime(tmp_path / "old", b"{}")}"\n')
    source = tmp_path / "data"
    source.mkdir()
    rro = ContainerOptions(mounts=(BindMount(source=str(source), destination="/d", readonly=True,
                                             recursive_read_only=True),))
    with pytest.raises(NotFound, match='no runtime for "kata" is configured'):
        m.create("image", ContainerOptions(), extra_config={"runtime_handler": "kata"})
    with pytest.raises(InvalidArgument, match="runtime handler 'old' cannot make recursive read-only mounts"):
        m.create("image", rro, extra_config={"runtime_handler": "old"})
    assert list((tmp_path / "state" / "containers").iterdir()) == []


# --- recursive read-only mounts -----------------------------------------------------------


def test_rro_in_the_spec(rootfs: Path, host: HostLimits, tmp_path: Path,
                         validate_spec: Callable[[dict[str, Any]], None]) -> None:
    from hawser.oci import ImageConfig, Platform

    image = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=(), cmd=("sh",))

    def bind(**fields: Any) -> dict[str, Any]:
        options = ContainerOptions(mounts=(BindMount(source=str(tmp_path), destination="/d", **fields),))
        spec = build_spec(image, options, rootfs=str(rootfs), host=host)
        validate_spec(spec)
        return next(m for m in spec["mounts"] if m["destination"] == "/d")

    assert bind(readonly=True, recursive_read_only=True)["options"] == ["rbind", "ro", "rro", "rprivate"]
    assert bind(readonly=True)["options"] == ["rbind", "ro", "rprivate"]
    with pytest.raises(InvalidArgument, match="a recursive read-only mount must be read-only too"):
        bind(recursive_read_only=True)
    with pytest.raises(InvalidArgument, match="must have private propagation, not rslave"):
        bind(readonly=True, recursive_read_only=True, propagation="rslave")


def cri_mount(**fields: Any) -> api_pb2.Mount:
    return api_pb2.Mount(container_path="/data", host_path="/srv/data", **fields)


def plan(*mounts: api_pb2.Mount, runtime: str = "runc-b") -> Any:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name="app"),
                                     image=api_pb2.ImageSpec(image="127.0.0.1:5000/app:v1"), mounts=list(mounts))
    files = FakeFiles(existing={"/srv/data"}, shared={"/srv/data": "shared"})
    return plan_container(config, make_sandbox(runtime_handler="b", runtime=runtime), files=files)


def test_the_cri_plan_carries_rro_and_the_pods_handler() -> None:
    mount = cri_mount(readonly=True, recursive_read_only=True)
    result = plan(mount)
    [bind] = [m for m in result.options.mounts if m.destination == "/data"]
    assert (bind.readonly, bind.recursive_read_only, bind.propagation) == (True, True, "rprivate")
    assert [mount_from_json(m) for m in result.extra_config[CRI_MOUNTS]] == [mount]  # ContainerStatus' mounts
    assert result.extra_config[ContainerManager.RUNTIME_HANDLER] == "runc-b"
    # A pod recorded before handlers: what it asked for ("" is the default).
    assert plan(runtime="").extra_config[ContainerManager.RUNTIME_HANDLER] == "b"


@pytest.mark.parametrize(("mount", "message"), [
    (cri_mount(recursive_read_only=True), "mount /data: recursive_read_only needs readonly set too"),
    (cri_mount(readonly=True, recursive_read_only=True, propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER),
     "mount /data: recursive_read_only needs propagation PROPAGATION_PRIVATE, not PROPAGATION_HOST_TO_CONTAINER"),
    (cri_mount(readonly=True, recursive_read_only=True, propagation=api_pb2.PROPAGATION_BIDIRECTIONAL),
     "not PROPAGATION_BIDIRECTIONAL"),
])
def test_the_cri_refuses_rro_without_readonly_or_with_propagation(mount: api_pb2.Mount, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        plan(mount)


# --- the CRI's check of a named handler -------------------------------------------------------


def deps(containers: ContainerManager | None) -> CriDeps:
    return CriDeps(images=cast(Any, None), catalog=cast(Any, None), blocking=cast(Any, None),
                   pulls=cast(Any, None), pull_worker=cast(Any, SimpleNamespace()),
                   network_status=cast(Any, None), containers=containers)


def test_the_cri_names_the_configured_handlers(tmp_path: Path) -> None:
    d = deps(manager(tmp_path, '[runtimes.runc-b]\n[runtimes.crun]\nbinary = "/usr/bin/crun"\n'))
    assert d.runtime_handler("", call="PullImage") == "runc"
    assert d.runtime_handler("runc-b", call="RunPodSandbox") == "runc-b"
    with pytest.raises(InvalidArgument) as caught:
        d.runtime_handler("kata", call="RunPodSandbox")
    assert caught.value.message == 'RunPodSandbox: no runtime for "kata" is configured'
    assert caught.value.hint == "configured runtime handlers: crun, runc, runc-b"
    assert d.runtime_handler_names() == ("", "runc", "crun", "runc-b")
    # A daemon without containers (the service edge's tests): the fixed list.
    bare = deps(None)
    assert bare.runtime_handler("", call="PullImage") == "" and bare.runtime_handler_names() == ("", "runc")
    with pytest.raises(InvalidArgument) as bare_caught:
        bare.runtime_handler("kata", call="ImageStatus")
    assert bare_caught.value.message == 'ImageStatus: no runtime for "kata" is configured'
    assert bare_caught.value.hint == "configured runtime handlers: runc"


def test_a_default_config_has_one_handler() -> None:
    assert Config().runtimes == {"runc": RuntimeHandlerConfig()}
