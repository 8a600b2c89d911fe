"""plan_container: a CRI ContainerConfig in its pod -> ContainerOptions and the record's facts.

Rows of a table: a config (built from a few fields) in, option fields out.
Then the same plans through build_spec, checked against the OCI schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from hawser._dataclass import replace
from hawser.cri._container_options import (
    CRI_ANNOTATIONS,
    CRI_LABELS,
    CRI_LOG_PATH,
    CRI_METADATA,
    CRI_MOUNTS,
    CRI_SANDBOX_ID,
    ContainerPlan,
    mount_from_json,
    plan_container,
    resources_from_cri,
    resources_to_cri,
)
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID, Sandbox
from hawser.runtime._defaults import DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS
from hawser.runtime._options import BindMount, Device, HostLimits, Namespaces, Resources
from hawser.runtime._spec import build_spec
from tests.support.cri_fakes import FakeFiles, make_sandbox
from tests.support.protos import set_fields

SB = "/run/hawser/sandboxes/sb1"
POD_NS = Namespaces(network=f"{SB}/ns/net", ipc=f"{SB}/ns/ipc", uts=f"{SB}/ns/uts", pid=None)
POD_MOUNTS = (
    BindMount(source=f"{SB}/resolv.conf", destination="/etc/resolv.conf", readonly=False, propagation="rprivate"),
    BindMount(source=f"{SB}/hostname", destination="/etc/hostname", readonly=False, propagation="rprivate"),
    BindMount(source=f"{SB}/shm", destination="/dev/shm", readonly=False, propagation="rprivate"),
)
PROFILE = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}


def config(*, name: str = "app", attempt: int = 0, image: str = "127.0.0.1:5000/app:v1", **fields: Any
           ) -> api_pb2.ContainerConfig:
    """A ContainerConfig; ``a__b=value`` sets the nested field a.b (lists extend, dicts update, messages copy)."""
    message = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=name, attempt=attempt),
                                      image=api_pb2.ImageSpec(image=image), log_path=f"{name}/{attempt}.log")
    set_fields(message, **fields)
    return message


def sc(**fields: Any) -> api_pb2.LinuxContainerSecurityContext:
    return api_pb2.LinuxContainerSecurityContext(**fields)


def plan(message: api_pb2.ContainerConfig, sandbox: Sandbox | None = None, files: FakeFiles | None = None,
         target_pid: int | None = None) -> ContainerPlan:
    return plan_container(message, sandbox or make_sandbox(), files=files or default_files(), target_pid=target_pid)


def default_files() -> FakeFiles:
    return FakeFiles(files={"/etc/seccomp/app.json": json.dumps(PROFILE).encode(),
                            "/etc/seccomp/bad.json": b'{"defaultAction": "SCMP_ACT_NOPE"}',
                            "/etc/seccomp/text.json": b"not json"},
                     existing={"/srv/data", "/srv/config.yaml"},
                     shared={"/srv/data": "shared", "/srv/config.yaml": "slave", "/srv/slave": "slave"},
                     nodes={"/dev/fuse": ("c", 10, 229), "/dev/sda": ("b", 8, 0)},
                     host=(Device(path="/dev/kmsg", type="c", major=1, minor=11),))


# --- the table -------------------------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("minimal", {}, {
        "entrypoint": None, "args": None, "env": ("HOSTNAME=web-host",), "workdir": None, "user": None,
        "namespaces": POD_NS, "mounts": POD_MOUNTS, "seccomp": False, "seccomp_profile": None,
        "privileged": False, "read_only": False, "no_new_privileges": False, "masked_paths": None,
        "readonly_paths": None, "devices": (), "resources": Resources(), "oom_score_adj": None, "tty": False,
        "stdin": False, "stdin_once": False, "stop_signal": None, "cap_add": (), "cap_drop": (), "additional_gids": ()}),
    ("command-is-entrypoint", {"command": ["/bin/server"], "args": ["--port", "80"]},
     {"entrypoint": ("/bin/server",), "args": ("--port", "80")}),
    ("args-only-keep-entrypoint", {"args": ["-v"]}, {"entrypoint": None, "args": ("-v",)}),
    ("env-and-workdir", {"envs": [api_pb2.KeyValue(key="A", value="1"), api_pb2.KeyValue(key="HOSTNAME", value="x")],
                         "working_dir": "/srv"},
     {"env": ("HOSTNAME=web-host", "A=1", "HOSTNAME=x"), "workdir": "/srv"}),
    ("tty-stdin-once", {"tty": True, "stdin": True, "stdin_once": True},
     {"tty": True, "stdin": True, "stdin_once": True}),
    ("stdin-kept-open", {"stdin": True}, {"stdin": True, "stdin_once": False}),
    ("stop-signal", {"stop_signal": api_pb2.SIGUSR1}, {"stop_signal": "SIGUSR1"}),
    ("annotations-to-spec", {"annotations": {"a": "1"}}, {"annotations": {"a": "1"}}),
    ("mounts-propagation", {"mounts": [
        api_pb2.Mount(container_path="/data", host_path="/srv/data"),
        api_pb2.Mount(container_path="/cfg/app.yaml/", host_path="/srv/config.yaml", readonly=True,
                      propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER),
        api_pb2.Mount(container_path="/shared", host_path="/srv/data", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL,
                      selinux_relabel=True)]},
     {"mounts": (BindMount(source="/srv/data", destination="/data", readonly=False, propagation="rprivate"),
                 BindMount(source="/srv/config.yaml", destination="/cfg/app.yaml", readonly=True,
                           propagation="rslave"),
                 BindMount(source="/srv/data", destination="/shared", readonly=False, propagation="rshared"),
                 *POD_MOUNTS)}),
    ("request-mount-wins-over-pod-file", {"mounts": [
        api_pb2.Mount(container_path="/etc/resolv.conf", host_path="/srv/config.yaml", readonly=True)]},
     {"mounts": (BindMount(source="/srv/config.yaml", destination="/etc/resolv.conf", readonly=True),
                 *POD_MOUNTS[1:])}),
    ("devices", {"devices": [api_pb2.Device(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rw"),
                             api_pb2.Device(container_path="/dev/xvda", host_path="/dev/sda")]},
     {"devices": (Device(path="/dev/fuse", type="c", major=10, minor=229, file_mode=0o666, uid=0, gid=0,
                         permissions="rw"),
                  Device(path="/dev/xvda", type="b", major=8, minor=0, file_mode=0o666, uid=0, gid=0,
                         permissions="rwm"))}),
    ("capabilities", {"linux__security_context": sc(capabilities=api_pb2.Capability(
        add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]))},
     {"cap_add": ("NET_ADMIN",), "cap_drop": ("ALL",)}),
    ("run-as-uid-gid-groups", {"linux__security_context": sc(
        run_as_user=api_pb2.Int64Value(value=1000), run_as_group=api_pb2.Int64Value(value=3000),
        supplemental_groups=[4000, 5000])},
     {"user": "1000:3000", "additional_gids": (4000, 5000)}),
    ("run-as-uid-zero", {"linux__security_context": sc(run_as_user=api_pb2.Int64Value(value=0))}, {"user": "0"}),
    ("run-as-username", {"linux__security_context": sc(run_as_username="app",
                                                       run_as_group=api_pb2.Int64Value(value=10))},
     {"user": "app:10"}),
    ("read-only-root", {"linux__security_context": sc(readonly_rootfs=True)},
     {"read_only": True, "mounts": (replace(POD_MOUNTS[0], readonly=True), replace(POD_MOUNTS[1], readonly=True),
                                    POD_MOUNTS[2])}),
    ("no-new-privs", {"linux__security_context": sc(no_new_privs=True)}, {"no_new_privileges": True}),
    ("masked-readonly-given", {"linux__security_context": sc(masked_paths=["/proc/kcore"],
                                                             readonly_paths=["/proc/sys"])},
     {"masked_paths": ("/proc/kcore",), "readonly_paths": ("/proc/sys",)}),
    ("seccomp-runtime-default", {"linux__security_context": sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.RuntimeDefault))}, {"seccomp": True, "seccomp_profile": None}),
    ("seccomp-unconfined", {"linux__security_context": sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Unconfined))}, {"seccomp": False}),
    ("seccomp-localhost", {"linux__security_context": sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/etc/seccomp/app.json"))},
     {"seccomp": True, "seccomp_profile": PROFILE}),
    ("seccomp-path-runtime-default", {"linux__security_context": sc(seccomp_profile_path="runtime/default")},
     {"seccomp": True, "seccomp_profile": None}),
    ("seccomp-path-localhost", {"linux__security_context": sc(
        seccomp_profile_path="localhost//etc/seccomp/app.json")}, {"seccomp": True, "seccomp_profile": PROFILE}),
    ("seccomp-field-wins", {"linux__security_context": sc(
        seccomp_profile_path="unconfined",
        seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault))}, {"seccomp": True}),
    ("host-network-and-ipc", {"linux__security_context": sc(namespace_options=api_pb2.NamespaceOption(
        network=api_pb2.NODE, ipc=api_pb2.NODE, pid=api_pb2.CONTAINER))},
     {"namespaces": Namespaces(network="host", ipc="host", uts="host", pid=None)}),
    ("pid-node", {"linux__security_context": sc(namespace_options=api_pb2.NamespaceOption(pid=api_pb2.NODE))},
     {"namespaces": replace(POD_NS, pid="host")}),
    ("pid-pod-without-shared-pid", {"linux__security_context": sc(namespace_options=api_pb2.NamespaceOption(
        pid=api_pb2.POD))}, {"namespaces": POD_NS}),
    ("resources", {"linux__resources": api_pb2.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=64 << 20,
        memory_swap_limit_in_bytes=128 << 20, cpuset_cpus="0-1", cpuset_mems="0", oom_score_adj=-999,
        hugepage_limits=[api_pb2.HugepageLimit(page_size="2MB", limit=1 << 21)], unified={"memory.high": "1"})},
     {"resources": Resources(cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit=64 << 20,
                             memory_swap=128 << 20, cpuset_cpus="0-1", cpuset_mems="0"), "oom_score_adj": -999}),
    ("resources-zero-means-unset", {"linux__resources": api_pb2.LinuxContainerResources(
        memory_swap_limit_in_bytes=1 << 30)}, {"resources": Resources(), "oom_score_adj": 0}),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_options(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    options = plan(config(**fields)).options
    for name, value in expected.items():
        assert getattr(options, name) == value, name


def test_the_record_facts() -> None:
    mount = api_pb2.Mount(container_path="/data", host_path="/srv/data", readonly=True,
                          propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER)
    result = plan(config(name="db", attempt=3, labels={"tier": "db"}, annotations={"k": "v"}, mounts=[mount]))
    sandbox = make_sandbox()
    assert result.name == "db_web_ns_u1_3"
    assert result.labels == {LABEL_SANDBOX_ID: sandbox.id, LABEL_KIND: "container"}
    assert result.log_path == "/var/log/pods/ns_web_u1/db/3.log"
    assert result.cgroup_parent == "/kubepods/pod-u1"
    extra = result.extra_config
    assert extra[CRI_METADATA] == {"name": "db", "attempt": 3} and extra[CRI_SANDBOX_ID] == sandbox.id
    assert extra[CRI_LABELS] == {"tier": "db"} and extra[CRI_ANNOTATIONS] == {"k": "v"}
    assert extra[CRI_LOG_PATH] == result.log_path
    assert [mount_from_json(m) for m in extra[CRI_MOUNTS]] == [mount]
    json.dumps(dict(extra))  # it goes into SQLite as JSON


def test_log_path_needs_both_parts() -> None:
    assert plan(config(log_path="")).log_path is None
    assert plan(config(), make_sandbox(log_directory="")).log_path is None


def test_missing_host_paths_are_created() -> None:
    result = plan(config(mounts=[api_pb2.Mount(container_path="/new", host_path="/srv/new/"),
                                 api_pb2.Mount(container_path="/data", host_path="/srv/data")]))
    assert result.host_dirs == ("/srv/new",)


def test_pod_namespaces() -> None:
    host_pod = make_sandbox(netns=None, ipc=None, uts=None, shm=None, host_pid=True)
    options = plan(config(linux__security_context=sc(namespace_options=api_pb2.NamespaceOption(pid=api_pb2.POD))),
                   host_pod).options
    assert options.namespaces == Namespaces(network="host", ipc="host", uts="host", pid="host")
    # The host's IPC namespace comes with the host's /dev/shm.
    assert BindMount(source="/dev/shm", destination="/dev/shm") in options.mounts

    shared_pid = make_sandbox(pid="/proc/77/ns/pid")
    options = plan(config(linux__security_context=sc(namespace_options=api_pb2.NamespaceOption(pid=api_pb2.POD))),
                   shared_pid).options
    assert options.namespaces.pid == "/proc/77/ns/pid"
    options = plan(config(linux__security_context=sc(namespace_options=api_pb2.NamespaceOption(
        pid=api_pb2.TARGET, target_id="abc"))), target_pid=42).options
    assert options.namespaces.pid == "/proc/42/ns/pid"


def test_privileged() -> None:
    pod = make_sandbox(privileged=True)
    options = plan(config(devices=[api_pb2.Device(container_path="/dev/fuse", host_path="/dev/fuse")],
                          linux__security_context=sc(privileged=True, seccomp=api_pb2.SecurityProfile(
                              profile_type=api_pb2.SecurityProfile.RuntimeDefault))), pod).options
    assert options.privileged and not options.seccomp
    assert [d.path for d in options.devices] == ["/dev/fuse", "/dev/kmsg"]


ERRORS: list[tuple[str, Callable[[], api_pb2.ContainerConfig], type[HawserError], str]] = [
    ("no-metadata", lambda: api_pb2.ContainerConfig(image=api_pb2.ImageSpec(image="x")), InvalidArgument,
     "metadata.name"),
    ("no-image", lambda: config(image=""), InvalidArgument, "image"),
    ("relative-container-path", lambda: config(mounts=[api_pb2.Mount(container_path="data", host_path="/srv")]),
     InvalidArgument, "container path must be absolute"),
    ("relative-host-path", lambda: config(mounts=[api_pb2.Mount(container_path="/data", host_path="srv")]),
     InvalidArgument, "host path must be absolute"),
    ("unknown-propagation", lambda: config(mounts=[api_pb2.Mount(container_path="/d", host_path="/srv/data",
                                                                 propagation=9)]),  # type: ignore[arg-type]
     InvalidArgument, "propagation"),
    ("image-volume-writable", lambda: config(mounts=[api_pb2.Mount(container_path="/d",
                                                                   image=api_pb2.ImageSpec(image="x"))]),
     InvalidArgument, "image volume at /d: an image volume is read-only"),
    ("image-volume-host-path", lambda: config(mounts=[api_pb2.Mount(container_path="/d", host_path="/srv",
                                                                    readonly=True, image=api_pb2.ImageSpec(image="x"))]),
     InvalidArgument, "host_path must be empty"),
    ("seccomp-type", lambda: config(linux__security_context=sc(seccomp=api_pb2.SecurityProfile(profile_type=5))),
     InvalidArgument, "seccomp profile type"),
    ("seccomp-missing", lambda: config(linux__security_context=sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/etc/seccomp/none.json"))),
     InvalidArgument, "does not exist"),
    ("seccomp-relative", lambda: config(linux__security_context=sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="app.json"))), InvalidArgument, "absolute"),
    ("seccomp-not-json", lambda: config(linux__security_context=sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/etc/seccomp/text.json"))),
     InvalidArgument, "not JSON"),
    ("seccomp-bad-action", lambda: config(linux__security_context=sc(seccomp=api_pb2.SecurityProfile(
        profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref="/etc/seccomp/bad.json"))),
     InvalidArgument, "defaultAction"),
    ("seccomp-path-unknown", lambda: config(linux__security_context=sc(seccomp_profile_path="docker/strict")),
     InvalidArgument, "unknown seccomp profile"),
    ("group-without-user", lambda: config(linux__security_context=sc(run_as_group=api_pb2.Int64Value(value=1))),
     InvalidArgument, "run_as_group"),
    ("user-and-username", lambda: config(linux__security_context=sc(run_as_user=api_pb2.Int64Value(value=1),
                                                                    run_as_username="app")),
     InvalidArgument, "only one"),
    ("negative-uid", lambda: config(linux__security_context=sc(run_as_user=api_pb2.Int64Value(value=-1))),
     InvalidArgument, "negative"),
    ("privileged-in-plain-pod", lambda: config(linux__security_context=sc(privileged=True)), InvalidArgument,
     "privileged pod"),
    ("target-without-id", lambda: config(linux__security_context=sc(namespace_options=api_pb2.NamespaceOption(
        pid=api_pb2.TARGET))), InvalidArgument, "target_id"),
    ("target-not-running", lambda: config(linux__security_context=sc(namespace_options=api_pb2.NamespaceOption(
        pid=api_pb2.TARGET, target_id="abc"))), FailedPrecondition, "no running process"),
    ("bidirectional-needs-shared", lambda: config(mounts=[api_pb2.Mount(
        container_path="/d", host_path="/srv/slave", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL)]),
     FailedPrecondition, "bidirectional propagation"),
    ("host-to-container-needs-shared-or-slave", lambda: config(mounts=[api_pb2.Mount(
        container_path="/d", host_path="/srv/private", propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER)]),
     FailedPrecondition, "host-to-container propagation"),
    ("device-relative", lambda: config(devices=[api_pb2.Device(container_path="fuse", host_path="/dev/fuse")]),
     InvalidArgument, "must be absolute"),
    ("device-not-a-node", lambda: config(devices=[api_pb2.Device(container_path="/dev/x", host_path="/srv/data")]),
     InvalidArgument, "not a device"),
    ("device-permissions", lambda: config(devices=[api_pb2.Device(container_path="/dev/x", host_path="/dev/fuse",
                                                                  permissions="rwx")]),
     InvalidArgument, "permissions"),
]


@pytest.mark.parametrize(("make", "kind", "text"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(make: Callable[[], api_pb2.ContainerConfig], kind: type[HawserError], text: str) -> None:
    with pytest.raises(kind, match=text):
        plan(make())


# --- through build_spec ---------------------------------------------------------------------------

IMAGE = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=(), cmd=("sh",),
                    env=("PATH=/bin",))


@pytest.fixture
def pod_files(tmp_path: Path) -> Sandbox:
    """A sandbox whose files exist (build_spec checks bind sources on the host)."""
    root = tmp_path / "sb"
    (root / "shm").mkdir(parents=True)
    for name in ("resolv.conf", "hostname"):
        (root / name).write_text("x\n")
    return make_sandbox(root=str(root))


def spec_of(message: api_pb2.ContainerConfig, sandbox: Sandbox, rootfs: Path, host: HostLimits,
            validate: Callable[[dict[str, Any]], None], files: FakeFiles | None = None) -> dict[str, Any]:
    result = plan_container(message, sandbox, files=files or default_files())
    spec = build_spec(IMAGE, result.options, rootfs=str(rootfs), host=host)
    validate(spec)
    return spec


def test_spec_joins_the_pod(pod_files: Sandbox, rootfs: Path, host: HostLimits,
                            validate_spec: Callable[[dict[str, Any]], None]) -> None:
    spec = spec_of(config(), pod_files, rootfs, host, validate_spec)
    namespaces = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert namespaces == {"pid": None, "ipc": pod_files.ipc, "uts": pod_files.uts, "network": pod_files.netns,
                          "mount": None}
    assert "hostname" not in spec  # the pod's UTS namespace has it already
    binds = {m["destination"]: m for m in spec["mounts"] if m["type"] == "bind"}
    assert binds["/etc/resolv.conf"]["source"] == pod_files.resolv_conf
    assert binds["/etc/hostname"]["source"] == pod_files.hostname_file
    assert binds["/dev/shm"]["source"] == pod_files.shm
    assert [m["destination"] for m in spec["mounts"]].count("/dev/shm") == 1  # the pod's replaces the default
    assert "HOSTNAME=web-host" in spec["process"]["env"]
    assert "seccomp" not in spec["linux"]  # api.proto: no profile given is unconfined
    assert spec["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert spec["linux"]["readonlyPaths"] == list(READONLY_PATHS)
    assert spec["process"]["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)


def test_spec_security_and_devices(pod_files: Sandbox, rootfs: Path, host: HostLimits,
                                   validate_spec: Callable[[dict[str, Any]], None]) -> None:
    message = config(
        devices=[api_pb2.Device(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rw")],
        linux__resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=32 << 20, oom_score_adj=-999),
        linux__security_context=sc(
            run_as_user=api_pb2.Int64Value(value=1000), supplemental_groups=[4000], masked_paths=["/proc/kcore"],
            readonly_paths=["/proc/bus"], no_new_privs=True,
            capabilities=api_pb2.Capability(drop_capabilities=["ALL"], add_capabilities=["CAP_NET_BIND_SERVICE"]),
            seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Localhost,
                                            localhost_ref="/etc/seccomp/app.json")))
    spec = spec_of(message, pod_files, rootfs, host, validate_spec)
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 4000]}
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_NET_BIND_SERVICE"]
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["oomScoreAdj"] == -998  # clamped to what hawserd may grant
    assert spec["linux"]["maskedPaths"] == ["/proc/kcore"] and spec["linux"]["readonlyPaths"] == ["/proc/bus"]
    assert spec["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    assert spec["linux"]["devices"] == [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                         "fileMode": 0o666, "uid": 0, "gid": 0}]
    assert spec["linux"]["resources"]["devices"][-1] == {"allow": True, "type": "c", "major": 10, "minor": 229,
                                                         "access": "rw"}
    assert spec["linux"]["resources"]["memory"] == {"limit": 32 << 20}


def test_spec_privileged_and_bidirectional(pod_files: Sandbox, rootfs: Path, host: HostLimits, tmp_path: Path,
                                           validate_spec: Callable[[dict[str, Any]], None]) -> None:
    pod = replace(pod_files, privileged=True)
    files = default_files()
    files.existing.add(str(tmp_path))
    files.shared[str(tmp_path)] = "shared"
    message = config(mounts=[api_pb2.Mount(container_path="/mnt", host_path=str(tmp_path),
                                           propagation=api_pb2.PROPAGATION_BIDIRECTIONAL)],
                     linux__security_context=sc(privileged=True, masked_paths=["/proc/kcore"]))
    spec = spec_of(message, pod, rootfs, host, validate_spec, files)
    assert "maskedPaths" not in spec["linux"] and "seccomp" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [d["path"] for d in spec["linux"]["devices"]] == ["/dev/kmsg"]
    assert spec["linux"]["rootfsPropagation"] == "shared"
    assert next(m for m in spec["mounts"] if m["destination"] == "/mnt")["options"] == ["rbind", "rw", "rshared"]


def test_resources_round_trip() -> None:
    cri = api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=20000, cpu_shares=256, cpuset_cpus="1",
                                          cpuset_mems="0", memory_limit_in_bytes=1 << 30,
                                          memory_swap_limit_in_bytes=2 << 30)
    res = resources_from_cri(cri)
    spec = {"linux": {"resources": {"cpu": {"period": 100000, "quota": 20000, "shares": 256, "cpus": "1",
                                            "mems": "0"},
                                    "memory": {"limit": res.memory_limit, "swap": res.memory_swap}}},
            "process": {"oomScoreAdj": 7}}
    back = resources_to_cri(spec)
    cri.oom_score_adj = 7
    assert back == cri
    assert resources_to_cri({}) == api_pb2.LinuxContainerResources()


def test_real_propagation_lookup(tmp_path: Path) -> None:
    from hawser.cri._container_options import RealHostFiles

    # Whatever / is here, a path under it answers like / does, and a made-up path too.
    files = RealHostFiles()
    assert files.propagation("/") in ("shared", "slave", "private")
    assert files.propagation(str(tmp_path / "no" / "such")) == files.propagation(str(tmp_path))
