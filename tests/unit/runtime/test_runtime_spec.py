"""build_spec: image config + request -> OCI runtime spec.

Most tests are rows of a table: options in, fragments of the spec out.  Every
spec built here is also validated against the vendored OCI JSON schema.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hawser._dataclass import replace
from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.runtime._defaults import ALL_CAPABILITIES, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS
from hawser.runtime._options import (
    BindMount,
    ContainerOptions,
    HostLimits,
    Namespaces,
    Resources,
    TmpfsMount,
)
from hawser.runtime._spec import OCI_VERSION, build_spec

Validate = Callable[[dict[str, Any]], None]

IMAGE = ImageConfig(
    platform=Platform(os="linux", architecture="amd64"),
    diff_ids=(),
    env=("PATH=/usr/local/bin:/bin", "LANG=C.UTF-8"),
    cmd=("sh",),
)
DEFAULT_ENV = ["PATH=/usr/local/bin:/bin", "LANG=C.UTF-8", "HOME=/root"]


def get(spec: dict[str, Any], path: str) -> Any:
    node: Any = spec
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def mount_at(spec: dict[str, Any], destination: str) -> dict[str, Any] | None:
    return next((m for m in spec["mounts"] if m["destination"] == destination), None)


@pytest.fixture
def build(rootfs: Path, host: HostLimits, validate_spec: Validate) -> Callable[..., dict[str, Any]]:
    """build_spec with the fake rootfs and host; the result is schema-checked."""

    def run(options: ContainerOptions | None = None, image: ImageConfig = IMAGE,
            limits: HostLimits | None = None) -> dict[str, Any]:
        spec = build_spec(image, options or ContainerOptions(), rootfs=str(rootfs), host=limits or host)
        validate_spec(spec)
        return spec

    return run


# --- the table -------------------------------------------------------------------

bind_src = "/"  # exists on every host: bind sources are checked on the host

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (id, image fields, options, {dotted path: expected value})
    ("cmd-only", {}, {}, {"process.args": ["sh"]}),
    ("entrypoint+cmd", {"entrypoint": ("/entry",), "cmd": ("a", "b")}, {},
     {"process.args": ["/entry", "a", "b"]}),
    ("args-replace-cmd", {"entrypoint": ("/entry",), "cmd": ("a",)}, {"args": ("x", "y")},
     {"process.args": ["/entry", "x", "y"]}),
    ("entrypoint-override-drops-cmd", {"entrypoint": ("/entry",), "cmd": ("a",)}, {"entrypoint": ("/other",)},
     {"process.args": ["/other"]}),
    ("entrypoint-override-with-args", {"cmd": ("a",)}, {"entrypoint": ("/other",), "args": ("z",)},
     {"process.args": ["/other", "z"]}),
    ("entrypoint-cleared", {"entrypoint": ("/entry",), "cmd": ("a",)}, {"entrypoint": (), "args": ("ls", "-l")},
     {"process.args": ["ls", "-l"]}),
    ("empty-args-keep-entrypoint", {"entrypoint": ("/entry",), "cmd": ("a",)}, {"args": ()},
     {"process.args": ["/entry"]}),
    ("env-defaults", {}, {}, {"process.env": DEFAULT_ENV}),
    ("env-merge", {"env": ("PATH=/x", "A=1", "B=2")}, {"env": ("A=3", "C=4", "B=")},
     {"process.env": ["PATH=/x", "A=3", "B=", "C=4", "HOME=/root"]}),
    ("env-later-override-wins", {"env": ()}, {"env": ("A=1", "A=2")},
     {"process.env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=2", "HOME=/root"]}),
    ("env-path-default", {"env": ("X=1",)}, {},
     {"process.env.0": "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}),
    ("env-tty-term", {}, {"tty": True}, {"process.terminal": True,
                                          "process.env": [*DEFAULT_ENV[:2], "TERM=xterm", "HOME=/root"]}),
    ("env-tty-term-given", {}, {"tty": True, "env": ("TERM=vt100",)},
     {"process.env": ["PATH=/usr/local/bin:/bin", "LANG=C.UTF-8", "TERM=vt100", "HOME=/root"]}),
    ("env-home-given", {"env": ("HOME=/data",)}, {}, {"process.env.1": "HOME=/data"}),
    ("cwd-default", {}, {}, {"process.cwd": "/"}),
    ("cwd-image", {"working_dir": "/srv/app"}, {}, {"process.cwd": "/srv/app"}),
    ("cwd-image-relative", {"working_dir": "srv/app/"}, {}, {"process.cwd": "/srv/app"}),
    ("cwd-override", {"working_dir": "/srv/app"}, {"workdir": "/tmp"}, {"process.cwd": "/tmp"}),
    ("user-root", {}, {}, {"process.user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]}}),
    ("user-image", {"user": "app"}, {},
     {"process.user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 29]},
      "process.env.2": "HOME=/home/app"}),
    ("user-override", {"user": "app"}, {"user": "daemon:staff"},
     {"process.user": {"uid": 1, "gid": 50, "additionalGids": [50]}}),
    ("user-numeric", {}, {"user": "4321:4321"},
     {"process.user": {"uid": 4321, "gid": 4321, "additionalGids": [4321]}, "process.env.2": "HOME=/"}),
    ("caps-default", {}, {}, {"process.capabilities.bounding": list(DEFAULT_CAPABILITIES),
                              "process.capabilities.effective": list(DEFAULT_CAPABILITIES),
                              "process.capabilities.permitted": list(DEFAULT_CAPABILITIES)}),
    ("caps-add-drop", {}, {"cap_add": ("net_admin", "CAP_SYS_TIME"), "cap_drop": ("CHOWN", "cap_mknod", "KILL")},
     {"process.capabilities.bounding": [c for c in DEFAULT_CAPABILITIES
                                        if c not in ("CAP_CHOWN", "CAP_MKNOD", "CAP_KILL")]
      + ["CAP_NET_ADMIN", "CAP_SYS_TIME"]}),
    ("caps-add-existing", {}, {"cap_add": ("CHOWN",)}, {"process.capabilities.bounding": list(DEFAULT_CAPABILITIES)}),
    ("caps-drop-all", {}, {"cap_drop": ("ALL",), "cap_add": ("NET_BIND_SERVICE",)},
     {"process.capabilities.bounding": ["CAP_NET_BIND_SERVICE"]}),
    ("caps-drop-all-only", {}, {"cap_drop": ("all",)}, {"process.capabilities.bounding": []}),
    ("caps-add-all", {}, {"cap_add": ("ALL",), "cap_drop": ("SYS_ADMIN",)},
     {"process.capabilities.bounding": [c for c in ALL_CAPABILITIES if c != "CAP_SYS_ADMIN"]}),
    ("privileged", {}, {"privileged": True, "cap_drop": ("ALL",)},
     {"process.capabilities.bounding": list(ALL_CAPABILITIES), "linux.resources.devices": [
         {"allow": True, "access": "rwm"}]}),
    ("no-new-privileges-off", {}, {"no_new_privileges": False}, {"process.noNewPrivileges": False}),
    ("read-only", {}, {"read_only": True}, {"root.readonly": True}),
    ("rootfs-rw", {}, {}, {"root.readonly": False, "ociVersion": OCI_VERSION}),
    ("rlimit-clamped", {}, {}, {"process.rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]}),
    ("oom-clamped", {}, {"oom_score_adj": -500}, {"process.oomScoreAdj": 0}),
    ("oom-kept", {}, {"oom_score_adj": 500}, {"process.oomScoreAdj": 500}),
    ("hostname", {}, {"hostname": "web-1"}, {"hostname": "web-1"}),
    ("annotations", {}, {"annotations": {"io.kubernetes.cri.container-type": "container", "x": ""}},
     {"annotations": {"io.kubernetes.cri.container-type": "container", "x": ""}}),
    ("cgroups-path", {}, {"cgroups_path": "/hawser/abc"}, {"linux.cgroupsPath": "/hawser/abc"}),
    ("cgroups-path-systemd", {}, {"cgroups_path": "system.slice:hawser:abc"},
     {"linux.cgroupsPath": "system.slice:hawser:abc"}),
    ("namespaces-new", {}, {}, {"linux.namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                                     {"type": "network"}, {"type": "mount"}]}),
    ("namespaces-join", {}, {"namespaces": Namespaces(network="/var/run/netns/cni-1", ipc="/proc/42/ns/ipc",
                                                      uts="/proc/42/ns/uts", pid="/proc/42/ns/pid")},
     {"linux.namespaces": [{"type": "pid", "path": "/proc/42/ns/pid"}, {"type": "ipc", "path": "/proc/42/ns/ipc"},
                           {"type": "uts", "path": "/proc/42/ns/uts"},
                           {"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "mount"}]}),
    ("namespaces-host", {}, {"namespaces": Namespaces(network="host", pid="host", ipc="host", uts="host")},
     {"linux.namespaces": [{"type": "mount"}]}),
    ("masked-readonly", {}, {}, {"linux.maskedPaths": list(MASKED_PATHS),
                                 "linux.readonlyPaths": list(READONLY_PATHS)}),
    ("sysctls", {}, {"sysctls": {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000000",
                                 "fs.mqueue.msg_max": "20", "kernel.sem": "250 32000 32 128",
                                 "kernel.msgmax": "9000", "kernel.domainname": "example.org"}},
     {"linux.sysctl": {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000000",
                       "fs.mqueue.msg_max": "20", "kernel.sem": "250 32000 32 128", "kernel.msgmax": "9000",
                       "kernel.domainname": "example.org"}}),
    ("sysctl-net-joined-netns", {}, {"sysctls": {"net.core.somaxconn": "1024"},
                                     "namespaces": Namespaces(network="/var/run/netns/x")},
     {"linux.sysctl": {"net.core.somaxconn": "1024"}}),
    ("resources-none", {}, {}, {"linux.resources.devices.0": {"allow": False, "access": "rwm"}}),
    ("resources", {}, {"resources": Resources(cpu_shares=512, cpu_quota=50000, cpu_period=100000, cpuset_cpus="0-1",
                                              cpuset_mems="0", memory_limit=64 << 20, memory_swap=128 << 20,
                                              pids_limit=100)},
     {"linux.resources.cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
      "linux.resources.memory": {"limit": 64 << 20, "swap": 128 << 20}, "linux.resources.pids": {"limit": 100}}),
    ("resources-unlimited", {}, {"resources": Resources(memory_limit=64 << 20, memory_swap=-1, pids_limit=-1,
                                                        cpu_quota=-1)},
     {"linux.resources.memory": {"limit": 64 << 20, "swap": -1}, "linux.resources.pids": {"limit": -1},
      "linux.resources.cpu": {"quota": -1}}),
    ("seccomp-default", {}, {}, {"linux.seccomp.defaultAction": "SCMP_ACT_ERRNO",
                                 "linux.seccomp.defaultErrnoRet": 1}),
]


@pytest.mark.parametrize(("image_fields", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_spec_fragments(build: Callable[..., dict[str, Any]], image_fields: dict[str, Any], options: dict[str, Any],
                        expected: dict[str, Any]) -> None:
    spec = build(ContainerOptions(**options), image=replace(IMAGE, **image_fields))
    for path, value in expected.items():
        assert get(spec, path) == value, path


# --- what is absent, and the mounts ------------------------------------------------


def test_minimal_spec_has_no_optional_sections(build: Callable[..., dict[str, Any]], rootfs: Path) -> None:
    spec = build()
    assert "hostname" not in spec and "annotations" not in spec
    assert "oomScoreAdj" not in spec["process"]
    assert "cgroupsPath" not in spec["linux"] and "sysctl" not in spec["linux"]
    assert set(spec["process"]["capabilities"]) == {"bounding", "effective", "permitted"}  # no inheritable/ambient
    assert spec["root"]["path"] == str(rootfs)
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["terminal"] is False


def test_privileged_drops_confinement(build: Callable[..., dict[str, Any]]) -> None:
    spec = build(ContainerOptions(privileged=True))
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert "seccomp" not in spec["linux"]
    assert "rw" in mount_at(spec, "/sys")["options"]  # type: ignore[index]
    assert "rw" in mount_at(spec, "/sys/fs/cgroup")["options"]  # type: ignore[index]


def test_unconfined_seccomp(build: Callable[..., dict[str, Any]]) -> None:
    assert "seccomp" not in build(ContainerOptions(seccomp=False))["linux"]


def test_seccomp_follows_added_capabilities(build: Callable[..., dict[str, Any]]) -> None:
    def allowed(spec: dict[str, Any], name: str) -> bool:
        return any(name in r["names"] and r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
                   for r in spec["linux"]["seccomp"]["syscalls"])

    assert not allowed(build(), "mount")
    assert allowed(build(ContainerOptions(cap_add=("SYS_ADMIN",))), "mount")
    assert not allowed(build(ContainerOptions(cap_add=("ALL",), cap_drop=("SYS_ADMIN",))), "mount")


def test_default_mounts(build: Callable[..., dict[str, Any]]) -> None:
    spec = build()
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"]
    assert mount_at(spec, "/dev") == {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                                      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
    assert mount_at(spec, "/dev/pts")["options"] == [  # type: ignore[index]
        "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    assert mount_at(spec, "/dev/shm")["options"] == [  # type: ignore[index]
        "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
    assert mount_at(spec, "/sys")["options"] == ["nosuid", "noexec", "nodev", "ro"]  # type: ignore[index]
    assert mount_at(spec, "/sys/fs/cgroup") == {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                                                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}


def test_user_mounts(build: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spec = build(ContainerOptions(
        mounts=(BindMount(source=str(data), destination="/data/deep", readonly=True, propagation="rslave"),
                BindMount(source=str(data), destination="/data")),
        tmpfs=(TmpfsMount(destination="/dev/shm", size=1 << 20), TmpfsMount(destination="/run", mode=0o755,
                                                                             options=("exec", "uid=1000"))),
    ))
    assert mount_at(spec, "/data/deep") == {"destination": "/data/deep", "type": "bind", "source": str(data),
                                            "options": ["rbind", "ro", "rslave"]}
    assert mount_at(spec, "/data")["options"] == ["rbind", "rw", "rprivate"]  # type: ignore[index]
    # The user's /dev/shm replaced the default one.
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "noexec", "mode=1777", f"size={1 << 20}"]}]
    assert mount_at(spec, "/run")["options"] == ["nosuid", "nodev", "mode=755", "exec", "uid=1000"]  # type: ignore[index]
    order = [m["destination"] for m in spec["mounts"]]
    assert order.index("/data") < order.index("/data/deep")  # parents first
    assert order.index("/dev") < order.index("/dev/shm")


def test_user_mount_replaces_proc_default(build: Callable[..., dict[str, Any]]) -> None:
    spec = build(ContainerOptions(mounts=(BindMount(source=bind_src, destination="/sys"),)))
    assert [m["type"] for m in spec["mounts"] if m["destination"] == "/sys"] == ["bind"]


def test_rlimits_and_oom_from_host(build: Callable[..., dict[str, Any]]) -> None:
    unlimited = HostLimits(rlimits={"RLIMIT_NOFILE": (-1, -1)}, min_oom_score_adj=-1000)
    spec = build(ContainerOptions(oom_score_adj=-999), limits=unlimited)
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]
    assert spec["process"]["oomScoreAdj"] == -999
    big = HostLimits(rlimits={"RLIMIT_NOFILE": (1024, 4_000_000)}, min_oom_score_adj=300)
    spec = build(ContainerOptions(oom_score_adj=100), limits=big)
    assert spec["process"]["rlimits"][0]["hard"] == 1048576
    assert spec["process"]["oomScoreAdj"] == 300
    unknown = HostLimits(rlimits={}, min_oom_score_adj=0)
    assert build(limits=unknown)["process"]["rlimits"][0]["hard"] == 1048576


def test_older_kernel_caps_are_left_out(build: Callable[..., dict[str, Any]]) -> None:
    old = HostLimits(rlimits={}, min_oom_score_adj=0, cap_last_cap=37)  # before CAP_PERFMON (5.8)
    assert build(ContainerOptions(privileged=True), limits=old)["process"]["capabilities"]["bounding"] == list(
        ALL_CAPABILITIES[:38])
    assert "CAP_BPF" not in build(ContainerOptions(cap_add=("BPF",)), limits=old)["process"]["capabilities"]["bounding"]


def test_hostname_needs_own_uts(build: Callable[..., dict[str, Any]]) -> None:
    assert "hostname" not in build(ContainerOptions(namespaces=Namespaces(uts="host")))


def test_aarch64_host(build: Callable[..., dict[str, Any]]) -> None:
    arm = HostLimits(rlimits={}, min_oom_score_adj=0, machine="aarch64")
    assert build(limits=arm)["linux"]["seccomp"]["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_kitchen_sink_validates(build: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    spec = build(ContainerOptions(
        args=("-c", "echo ok"), entrypoint=("/bin/sh",), env=("A=B",), workdir="/home/app", user="app:audio",
        tty=True, stdin=True, hostname="box", read_only=True,
        mounts=(BindMount(source=str(tmp_path), destination="/host", readonly=True),),
        tmpfs=(TmpfsMount(destination="/tmp", size=64 << 20),),
        cap_add=("SYS_PTRACE",), cap_drop=("NET_RAW",), resources=Resources(cpu_shares=1024, memory_limit=1 << 30,
                                                                            pids_limit=64),
        sysctls={"net.ipv4.ping_group_range": "0 2147483647"}, oom_score_adj=10, annotations={"a": "b"},
        cgroups_path="/hawser/x", stop_signal="SIGINT",
    ))
    assert spec["process"]["args"] == ["/bin/sh", "-c", "echo ok"]


# --- errors --------------------------------------------------------------------------

ERRORS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("no-command", {"cmd": ()}, {}, "no command: the image has no Entrypoint or Cmd and none was given"),
    ("no-command-cleared", {"entrypoint": ("/e",), "cmd": ()}, {"entrypoint": ()}, "no command"),
    ("empty-argv0", {}, {"args": ("",)}, "empty command name"),
    ("unknown-user", {"user": "ghost"}, {}, "unknown user 'ghost': not in the image's /etc/passwd"),
    ("unknown-group", {}, {"user": "app:ghosts"}, "unknown group 'ghosts'"),
    ("unknown-cap-add", {}, {"cap_add": ("NET_WIZARD",)}, "unknown capability 'NET_WIZARD'"),
    ("unknown-cap-drop", {}, {"cap_drop": ("CAP_FOO",)}, "unknown capability 'CAP_FOO'"),
    ("env-no-equals", {}, {"env": ("JUSTKEY",)}, "invalid environment variable 'JUSTKEY'"),
    ("env-empty-key", {}, {"env": ("=v",)}, "invalid environment variable '=v'"),
    ("workdir-relative", {}, {"workdir": "app"}, "invalid working directory 'app'"),
    ("bind-dest-relative", {}, {"mounts": (BindMount(source=bind_src, destination="data"),)},
     "invalid mount destination 'data': must be an absolute path"),
    ("bind-dest-dotdot", {}, {"mounts": (BindMount(source=bind_src, destination="/data/../etc"),)},
     "invalid mount destination '/data/../etc': must be a normalised path"),
    ("bind-dest-trailing", {}, {"mounts": (BindMount(source=bind_src, destination="/data/"),)},
     "must be a normalised path"),
    ("bind-dest-double-slash", {}, {"mounts": (BindMount(source=bind_src, destination="//data"),)},
     "must be a normalised path"),
    ("bind-dest-root", {}, {"mounts": (BindMount(source=bind_src, destination="/"),)}, "invalid mount destination '/'"),
    ("bind-source-missing", {}, {"mounts": (BindMount(source="/nonexistent/hawser", destination="/d"),)},
     "invalid mount source '/nonexistent/hawser' for /d: no such file or directory"),
    ("bind-source-relative", {}, {"mounts": (BindMount(source="data", destination="/d"),)},
     "invalid mount source 'data' for /d: must be an absolute host path"),
    ("tmpfs-dest-relative", {}, {"tmpfs": (TmpfsMount(destination="tmp"),)}, "invalid mount destination 'tmp'"),
    ("mount-duplicate", {}, {"mounts": (BindMount(source=bind_src, destination="/d"),),
                             "tmpfs": (TmpfsMount(destination="/d"),)}, "duplicate mount destination /d"),
    ("sysctl-not-namespaced", {}, {"sysctls": {"vm.swappiness": "10"}}, "sysctl vm.swappiness is not namespaced"),
    ("sysctl-kernel", {}, {"sysctls": {"kernel.pid_max": "10"}}, "sysctl kernel.pid_max is not namespaced"),
    ("sysctl-net-host", {}, {"sysctls": {"net.core.somaxconn": "1"}, "namespaces": Namespaces(network="host")},
     "sysctl net.core.somaxconn is not allowed with the host's network namespace"),
    ("sysctl-ipc-host", {}, {"sysctls": {"kernel.shmmax": "1"}, "namespaces": Namespaces(ipc="host")},
     "sysctl kernel.shmmax is not allowed with the host's IPC namespace"),
    ("sysctl-mqueue-host", {}, {"sysctls": {"fs.mqueue.queues_max": "1"}, "namespaces": Namespaces(ipc="host")},
     "not allowed with the host's IPC namespace"),
    ("sysctl-bad-key", {}, {"sysctls": {"net..x": "1"}}, "invalid sysctl 'net..x'"),
    ("sysctl-bad-value", {}, {"sysctls": {"net.core.somaxconn": "1\n2"}}, "invalid value for sysctl"),
    ("hostname-joined-uts", {}, {"hostname": "x", "namespaces": Namespaces(uts="/proc/1/ns/uts")},
     "cannot set hostname 'x': the container shares a UTS namespace"),
    ("hostname-host-uts", {}, {"hostname": "x", "namespaces": Namespaces(uts="host")}, "cannot set hostname"),
    ("hostname-too-long", {}, {"hostname": "h" * 65}, "invalid hostname"),
    ("namespace-relative", {}, {"namespaces": Namespaces(network="netns/x")}, "invalid network namespace 'netns/x'"),
    ("oom-range", {}, {"oom_score_adj": 1001}, "invalid oom_score_adj 1001"),
    ("cpu-shares", {}, {"resources": Resources(cpu_shares=1)}, "invalid cpu shares 1"),
    ("cpu-quota", {}, {"resources": Resources(cpu_quota=10)}, "invalid cpu quota 10"),
    ("cpu-period", {}, {"resources": Resources(cpu_period=10)}, "invalid cpu period 10"),
    ("cpuset", {}, {"resources": Resources(cpuset_cpus="0-a")}, "invalid cpuset cpus '0-a'"),
    ("memory-small", {}, {"resources": Resources(memory_limit=1024)}, "invalid memory limit 1024"),
    ("swap-without-memory", {}, {"resources": Resources(memory_swap=1 << 30)}, "needs a memory limit"),
    ("swap-below-memory", {}, {"resources": Resources(memory_limit=1 << 30, memory_swap=1 << 20)},
     "below the memory limit"),
    ("pids-zero", {}, {"resources": Resources(pids_limit=0)}, "invalid pids limit 0"),
    ("cgroups-relative", {}, {"cgroups_path": "hawser/x"}, "invalid cgroups path 'hawser/x'"),
    ("cgroups-dotdot", {}, {"cgroups_path": "/hawser/../x"}, "invalid cgroups path '/hawser/../x'"),
    ("annotation-empty-key", {}, {"annotations": {"": "v"}}, "invalid annotation ''"),
]


@pytest.mark.parametrize(("image_fields", "options", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_spec_errors(rootfs: Path, host: HostLimits, image_fields: dict[str, Any], options: dict[str, Any],
                     message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        build_spec(replace(IMAGE, **image_fields), ContainerOptions(**options), rootfs=str(rootfs), host=host)
    assert message in info.value.message


def test_rootfs_must_be_absolute(host: HostLimits) -> None:
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        build_spec(IMAGE, ContainerOptions(), rootfs="rootfs", host=host)


def test_errors_carry_hints(rootfs: Path, host: HostLimits) -> None:
    with pytest.raises(InvalidArgument) as info:
        build_spec(replace(IMAGE, cmd=()), ContainerOptions(), rootfs=str(rootfs), host=host)
    assert info.value.hint
    with pytest.raises(InvalidArgument) as info:
        build_spec(IMAGE, ContainerOptions(sysctls={"vm.overcommit_memory": "1"}), rootfs=str(rootfs), host=host)
    assert "net.*" in (info.value.hint or "")


def test_schema_validator_rejects_bad_specs(build: Callable[..., dict[str, Any]], validate_spec: Validate) -> None:
    """The schema check is live: broken specs fail it (including through $refs into other files)."""
    good = build()
    for path, bad in [("process.user.uid", -1), ("linux.namespaces.0.type", "galaxy"),
                      ("linux.seccomp.defaultAction", "SCMP_ACT_MAYBE"), ("process.rlimits.0.type", "nofile"),
                      ("mounts.0.options", "nosuid")]:
        spec = copy.deepcopy(good)
        *parents, last = path.split(".")
        node = get(spec, ".".join(parents))
        node[int(last) if isinstance(node, list) else last] = bad
        with pytest.raises(AssertionError, match="does not match the OCI schema"):
            validate_spec(spec)
    del good["ociVersion"]
    with pytest.raises(AssertionError, match="ociVersion"):
        validate_spec(good)


def test_caps_outside_the_bounding_set_are_never_granted(build: Callable[..., dict[str, Any]]) -> None:
    # Here CAP_SYS_RESOURCE (24) is withheld from hawser itself: privileged gets everything else,
    # and asking for it is a clear error rather than runc's "unable to apply caps".
    limited = HostLimits(rlimits={}, min_oom_score_adj=0, bounding=((1 << 41) - 1) & ~(1 << 24))
    caps = build(ContainerOptions(privileged=True), limits=limited)["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_RESOURCE" not in caps and "CAP_SYS_ADMIN" in caps
    with pytest.raises(InvalidArgument, match="CAP_SYS_RESOURCE cannot be granted"):
        build(ContainerOptions(cap_add=("SYS_RESOURCE",)), limits=limited)
