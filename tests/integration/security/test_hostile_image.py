"""A hostile image run through the real CLI: every way out that the defaults
close (no-new-privileges, read-only and masked /proc and /sys, capabilities,
seccomp, bind mounts resolved inside the rootfs) is tried, and each attempt
must fail with the error the kernel gives for that defence.

The image is busybox plus a small static C program compiled here (gcc is on
the test host) that makes the raw syscalls busybox has no applet for and
prints ``<probe>: <errno name>`` (or ``ok``), and a setuid-root copy of it.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.registry import RegistryClient
from tests.integration.conftest import Env, container_env
from tests.support.images import build_image, push_image
from tests.support.layers import LayerBuilder, busybox_layers
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.integration

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

static void report(const char *what, long rc) {
    if (rc < 0) printf("%s: %s\n", what, strerrorname_np(errno));
    else printf("%s: ok\n", what);
}

int main(int argc, char **argv) {
    static unsigned char zeros[256];
    for (int i = 1; i < argc; i++) {
        const char *p = argv[i];
        if (!strcmp(p, "ids")) printf("ids: %d %d\n", (int)getuid(), (int)geteuid());
        /* Each call is harmless if it were let through: bad flags, empty or
           NULL images, an invalid bpf command; only the errno is of interest. */
        else if (!strcmp(p, "raw")) report(p, socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
        else if (!strcmp(p, "mount")) report(p, mount("none", "/tmp", "tmpfs", 0, NULL));
        else if (!strcmp(p, "umount")) report(p, umount2("/proc/sys", MNT_DETACH));
        else if (!strcmp(p, "keyctl")) report(p, syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0));
        else if (!strcmp(p, "add_key")) report(p, syscall(SYS_add_key, "user", "hawser", "x", 1, -3));
        else if (!strcmp(p, "bpf")) {
            /* BPF_MAP_CREATE of a one-entry array: valid, so only a permission check can refuse it. */
            unsigned int attr[32] = {2 /* ARRAY */, 4 /* key size */, 4 /* value size */, 1 /* entries */};
            report(p, syscall(SYS_bpf, 0, attr, sizeof attr));
        }
        else if (!strcmp(p, "kexec_load")) report(p, syscall(SYS_kexec_load, 0, 0, NULL, 0xffff0000UL));
        else if (!strcmp(p, "kexec_file_load")) report(p, syscall(SYS_kexec_file_load, -1, -1, 0, NULL, ~0UL));
        else if (!strcmp(p, "init_module")) report(p, syscall(SYS_init_module, NULL, 0, ""));
        else if (!strcmp(p, "finit_module")) report(p, syscall(SYS_finit_module, -1, "", 0));
        else if (!strcmp(p, "unshare_user")) report(p, unshare(CLONE_NEWUSER));
        else if (!strcmp(p, "unshare_mnt")) report(p, unshare(CLONE_NEWNS));
        else if (!strcmp(p, "setns")) report(p, syscall(SYS_setns, -1, 0));
        else if (!strcmp(p, "userfaultfd")) report(p, syscall(SYS_userfaultfd, 0));
        else if (!strcmp(p, "perf_event_open")) report(p, syscall(SYS_perf_event_open, zeros, 0, -1, -1, 0));
        else if (!strcmp(p, "ptrace")) report(p, syscall(SYS_ptrace, 0x4206 /* SEIZE */, getppid(), 0, 0));
        else if (!strcmp(p, "acct")) report(p, syscall(SYS_acct, NULL));
        else if (!strcmp(p, "clone_newuser")) {
            long pid = syscall(SYS_clone, 0x10000000L /* CLONE_NEWUSER */ | 17 /* SIGCHLD */, 0, 0, 0, 0);
            if (pid == 0) _exit(0);
            if (pid > 0) waitpid((pid_t)pid, NULL, 0);
            report(p, pid);
        }
        else if (!strcmp(p, "open_by_handle_at")) report(p, syscall(SYS_open_by_handle_at, -1, zeros, 0));
        else { printf("%s: unknown probe\n", p); return 2; }
    }
    return 0;
}
"""

KERNEL_PROBES = ("mount", "umount", "keyctl", "add_key", "bpf", "kexec_load", "kexec_file_load", "init_module",
                 "finit_module", "unshare_user", "unshare_mnt", "clone_newuser", "setns", "open_by_handle_at",
                 "userfaultfd", "perf_event_open", "ptrace", "acct")


def _hostile_layer(probe: bytes) -> bytes:
    layer = LayerBuilder()
    layer.add_file("bin/probe", probe, mode=0o755)
    # The classic: a setuid-root binary for an unprivileged user to run.
    layer.add_file("bin/suid-probe", probe, mode=0o4755, uid=0, gid=0)
    # Symlinks aimed at the host: absolute, and climbing out with "..".
    layer.add_symlink("data", "/etc")
    layer.add_symlink("escape", "../../../../../../../../etc")
    layer.add_dir("mnt")
    # Device nodes of the host's kernel log and of its first disk, world-readable.
    layer.add_dir("evil")
    layer.add_char("evil/kmsg", 1, 11, mode=0o666)
    major, minor = _host_disk()
    layer.add_block("evil/disk", major, minor, mode=0o666)
    return layer.build()


def _host_disk() -> tuple[int, int]:
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            major, minor = Path(f"/sys/block/{name}/dev").read_text().split(":")
            return int(major), int(minor)
    return 7, 0  # loop0


@pytest.fixture(scope="module")
def hostile(registry: Registry, push_client: RegistryClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("probe")
    (work / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(work / "probe"), str(work / "probe.c")],
                   check=True, capture_output=True, timeout=120)
    image = build_image([*busybox_layers(), _hostile_layer((work / "probe").read_bytes())])
    ref = f"{registry.host}/test/hostile:latest"
    push_image(push_client, ref, image, tag="latest")
    return ref


@pytest.fixture
def ctr(tmp_path: Path, hostile: str) -> Iterator[tuple[Env, str]]:
    """A fresh store with the hostile image pulled; at teardown every
    container is removed and no conmon, mount or cgroup may be left."""
    with container_env(tmp_path, hostile, "/hawser-sec") as env:
        yield env, hostile


def _run(env: Env, ref: str, *args: str, opts: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return env.cli("run", "--rm", *opts, ref, *args, check=False)


def _probe(env: Env, ref: str, *probes: str, opts: tuple[str, ...] = (), binary: str = "/bin/probe") -> dict[str, str]:
    proc = _run(env, ref, binary, *probes, opts=opts)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines())


# --- setuid under no-new-privileges ---------------------------------------------


def test_setuid_root_binary_gains_nothing_under_no_new_privileges(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert _probe(env, ref, "ids", opts=("-u", "app"), binary="/bin/suid-probe") == {"ids": "1000 1000"}
    # The bit did survive the unpack: without no-new-privileges the same
    # binary does run as root, so the line above is no-new-privileges' doing.
    opt_out = ("-u", "app", "--security-opt", "no-new-privileges:false")
    assert _probe(env, ref, "ids", opts=opt_out, binary="/bin/suid-probe") == {"ids": "1000 0"}
    status = _run(env, ref, "sh", "-c", "grep NoNewPrivs /proc/self/status", opts=("-u", "app"))
    assert status.stdout.split() == ["NoNewPrivs:", "1"], status


def test_exec_gets_the_same_confinement(ctr: tuple[Env, str]) -> None:
    """A process exec'd into a running container: the container's process
    spec (no-new-privileges, capabilities) and its seccomp filter apply."""
    env, ref = ctr
    id_ = env.cli("run", "-d", ref, "sleep", "1000").stdout.strip()
    proc = env.cli("exec", "-u", "app", id_, "/bin/suid-probe", "ids", "mount", "keyctl", "unshare_user")
    assert proc.stdout.splitlines() == ["ids: 1000 1000", "mount: EPERM", "keyctl: EPERM", "unshare_user: EPERM"]
    proc = env.cli("exec", id_, "/bin/probe", "mount", "bpf", "init_module")
    assert proc.stdout.splitlines() == ["mount: EPERM", "bpf: EPERM", "init_module: EPERM"]


# --- /proc and /sys -------------------------------------------------------------

# Each write is harmless were it let through: the host's current value (None),
# or sysrq "h" (print help to the kernel log).  core_pattern is the classic
# escape: a pipe there runs a program of the container's as root on the host.
READ_ONLY_WRITES: dict[str, str | None] = {
    "/proc/sys/kernel/core_pattern": None,
    "/proc/sys/vm/overcommit_ratio": None,
    "/proc/sysrq-trigger": "h",
    "/proc/irq/default_smp_affinity": None,
    "/sys/class/net/lo/mtu": "65536",
    "/sys/kernel/mm/transparent_hugepage/enabled": "madvise",
    # The container's own cgroup: raising its limits would undo the node's.
    "/sys/fs/cgroup/pids/pids.max": "max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes": "-1",
}
# Not in the list: runc (1.1, cgroup v1) leaves the tmpfs that holds the
# controller mounts at /sys/fs/cgroup writable despite "ro".  A file made
# there lives in the container's own tmpfs and reaches no cgroup.


@pytest.mark.parametrize("path", sorted(READ_ONLY_WRITES))
def test_writes_to_proc_and_sys_are_read_only(ctr: tuple[Env, str], path: str) -> None:
    env, ref = ctr
    if not os.path.exists(path) and not path.startswith("/sys/fs/cgroup/"):
        pytest.skip(f"{path} is not in this kernel")  # e.g. CONFIG_MAGIC_SYSRQ off
    value = READ_ONLY_WRITES[path]
    if value is None:
        value = Path(path).read_text().strip()
    proc = _run(env, ref, "sh", "-c", f"printf '%s\\n' \"$0\" > {path}", value)
    assert proc.returncode != 0
    assert f"can't create {path}: Read-only file system" in proc.stderr, proc.stderr


def test_masked_paths_show_nothing_of_the_host(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    # The host has keys and timers to show; the container sees empty files
    # (runc binds /dev/null over them), so a write lands in /dev/null.
    assert Path("/proc/keys").read_text() and Path("/proc/timer_list").read_text()
    proc = _run(env, ref, "sh", "-c", "echo x > /proc/keys; wc -c < /proc/keys; wc -c < /proc/timer_list; "
                "stat -c %t:%T /proc/keys")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "1:3"]
    # Masked directories are an empty read-only tmpfs.
    proc = _run(env, ref, "sh", "-c", "ls -A /sys/firmware | wc -l; ls -A /proc/acpi | wc -l; touch /sys/firmware/x")
    assert proc.stdout.split() == ["0", "0"], proc.stdout
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr, proc.stderr


# --- capabilities and seccomp -----------------------------------------------------


def test_raw_sockets_need_net_raw(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert _probe(env, ref, "raw") == {"raw": "ok"}  # a default capability, as in containerd
    assert _probe(env, ref, "raw", opts=("--cap-drop", "NET_RAW")) == {"raw": "EPERM"}
    assert _probe(env, ref, "raw", opts=("-u", "app")) == {"raw": "EPERM"}


def test_device_nodes_from_the_image_cannot_be_opened(ctr: tuple[Env, str]) -> None:
    """The layer applier keeps device nodes (images may carry them) and
    CAP_MKNOD lets a container make more: the device cgroup is what stops
    them being opened."""
    env, ref = ctr
    proc = _run(env, ref, "sh", "-c", "head -c 1 /evil/kmsg; head -c 1 /evil/disk; mknod /tmp/disk b $0 && "
                "head -c 1 /tmp/disk; head -c 1 /opt/app/null && echo null-ok", " ".join(map(str, _host_disk())))
    assert proc.stderr.splitlines() == ["head: /evil/kmsg: Operation not permitted",
                                        "head: /evil/disk: Operation not permitted",
                                        "head: /tmp/disk: Operation not permitted"], proc.stderr
    assert proc.stdout == "null-ok\n"  # /dev/null's numbers are allowed, wherever the node is


def test_kernel_facing_syscalls_are_refused(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert _probe(env, ref, *KERNEL_PROBES) == dict.fromkeys(KERNEL_PROBES, "EPERM")


def test_capabilities_still_refuse_without_seccomp(ctr: tuple[Env, str]) -> None:
    """Defence in depth: with the filter off, the capability set alone
    still stops what needs CAP_SYS_ADMIN, CAP_SYS_BOOT or CAP_SYS_MODULE."""
    env, ref = ctr
    probes = ("mount", "umount", "unshare_mnt", "bpf", "kexec_load", "init_module", "finit_module")
    got = _probe(env, ref, *probes, opts=("--security-opt", "seccomp=unconfined"))
    # A kernel built without kexec or module support (this test host's) has
    # no such syscall at all: ENOSYS is as good a refusal.
    absent = {p: "ENOSYS" for p in ("kexec_load", "init_module", "finit_module") if got[p] == "ENOSYS"}
    assert got == {**dict.fromkeys(probes, "EPERM"), **absent}


def test_busybox_applets_report_the_refusals(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    proc = _run(env, ref, "unshare", "-U", "true")
    assert proc.returncode != 0 and "Operation not permitted" in proc.stderr, proc.stderr
    proc = _run(env, ref, "mount", "-t", "tmpfs", "none", "/mnt")
    assert proc.returncode != 0 and "permission denied" in proc.stderr.lower(), proc.stderr


# --- bind mounts through symlinks ---------------------------------------------------


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


def test_destination_through_an_absolute_image_symlink_stays_in_the_rootfs(ctr: tuple[Env, str],
                                                                            host_dir: Path) -> None:
    """The image's /data is a symlink to /etc: runc resolves the destination
    inside the rootfs (securejoin), so the volume covers the container's
    /etc, never the host's."""
    env, ref = ctr
    name = f"hawser-sec-{secrets.token_hex(4)}"
    try:
        proc = _run(env, ref, "sh", "-c", f"echo pwned > /data/{name} && cat /etc/{name} && ls /etc",
                    opts=("-v", f"{host_dir}:/data"))
        assert proc.returncode == 0, proc.stderr
        # The container's /etc is the (empty) volume, with the file in it and
        # the mount points of the files every container gets bound (as docker's).
        assert proc.stdout.split()[0] == "pwned"
        assert sorted(proc.stdout.split()[1:]) == sorted(["hostname", "hosts", name, "resolv.conf"])
        assert (host_dir / name).read_text() == "pwned\n"
        assert not os.path.lexists(f"/etc/{name}")
    finally:
        if os.path.lexists(f"/etc/{name}"):
            os.unlink(f"/etc/{name}")


def test_destination_climbing_out_through_an_image_symlink_stays_in_the_rootfs(ctr: tuple[Env, str],
                                                                               host_dir: Path) -> None:
    """/escape -> ../../../../../../../../etc: ".." stops at the rootfs,
    so the mount point is made in the container's /etc."""
    env, ref = ctr
    name = f"hawser-sec-{secrets.token_hex(4)}"
    try:
        proc = _run(env, ref, "sh", "-c", f"echo pwned > /escape/{name}/file && cat /etc/{name}/file "
                    "&& cat /etc/motd", opts=("-v", f"{host_dir}:/escape/{name}"))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "pwned\nhello from layer 2\n"  # the image's /etc, not the host's
        assert (host_dir / "file").read_text() == "pwned\n"
        assert not os.path.lexists(f"/etc/{name}")
    finally:
        if os.path.isdir(f"/etc/{name}"):
            subprocess.run(["umount", "-l", f"/etc/{name}"], check=False, capture_output=True)
            os.rmdir(f"/etc/{name}")


def test_destination_with_dot_dot_is_refused(ctr: tuple[Env, str], host_dir: Path) -> None:
    env, ref = ctr
    proc = _run(env, ref, "true", opts=("-v", f"{host_dir}:/tmp/../../etc"))
    assert proc.returncode == 125  # docker's code for an error of the runtime's own
    assert "invalid mount destination '/tmp/../../etc': must be a normalised path" in proc.stderr, proc.stderr


def test_host_source_through_a_symlink_keeps_read_only(ctr: tuple[Env, str], tmp_path: Path) -> None:
    """A source path is the (trusted) caller's choice and the kernel follows
    its symlinks, as docker and containerd do; what the container gets is
    still only what the mount options say: read-only stays read-only."""
    env, ref = ctr
    link = tmp_path / "link"
    link.symlink_to("/etc")
    proc = _run(env, ref, "sh", "-c", "cat /hostetc/debian_version; touch /hostetc/hawser-sec",
                opts=("-v", f"{link}:/hostetc:ro"))
    assert proc.stdout == Path("/etc/debian_version").read_text()
    assert proc.returncode != 0
    assert "touch: /hostetc/hawser-sec: Read-only file system" in proc.stderr, proc.stderr
    assert not os.path.lexists("/etc/hawser-sec")


# --- the store and bundles, seen by host users ----------------------------------------


def _reachable_by_others(base: str, path: str) -> bool:
    """Whether a host user outside root's group can walk from ``base`` (the
    store's root or state dir, where hawser's own directories start) to
    ``path``: every directory on the way searchable by others."""
    parts = os.path.relpath(path, base).split("/")
    return all(os.stat(os.path.join(base, *parts[:i])).st_mode & 0o001 for i in range(1, len(parts)))


def test_image_setuid_binaries_and_devices_are_out_of_host_users_reach(ctr: tuple[Env, str]) -> None:
    """An image's setuid-root files and device nodes are real files on the
    host (in snapshots, and in a running container's mounted rootfs): a host
    user who could walk to them would run them as root or open the device."""
    env, ref = ctr
    env.cli("run", "-d", ref, "sleep", "1000")
    found = []
    for base in (env.root, env.state):
        for dirpath, _, files in os.walk(base):
            for f in files:
                path = os.path.join(dirpath, f)
                st = os.lstat(path)
                setuid_root = bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0
                image_device = stat.S_ISCHR(st.st_mode) and path.endswith("/opt/app/null")
                if setuid_root or image_device:
                    found.append((base, path))
    # Both places hold them: the snapshots, and the running container's rootfs.
    assert {base for base, _ in found} == {env.root, env.state}, found
    assert [path for base, path in found if _reachable_by_others(base, path)] == []
