"""build_spec's output run by the real runc: a busybox bundle made by hand, one
container per test, every container, cgroup and state directory removed
afterwards.

This is the proof that runc 1.1.5 (libseccomp 2.5.4) accepts the spec and the
seccomp profile, and that the confinement holds inside a running container.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hawser._dataclass import replace
from hawser.oci import ImageConfig, Platform
from hawser.runtime._options import ContainerOptions, HostLimits, Namespaces
from hawser.runtime._spec import build_spec

pytestmark = pytest.mark.integration

CGROUP_PARENT = "hawser-test"
APPLETS = ("sh", "ls", "echo", "mount", "unshare", "cat", "id", "touch", "wc", "true", "[", "hostname", "readlink")
IMAGE = ImageConfig(
    platform=Platform.host(),
    diff_ids=(),
    user="tester",
    env=("PATH=/bin",),
    cmd=("sh",),
)


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def _make_rootfs(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "tester:x:1234:1234:Tester:/home/tester:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ntesters:x:1234:\nextra:x:2000:tester\n")
    for d in ("mnt", "tmp", "home/tester", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)


def _cgroup_dirs(relative: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    dirs = [p / relative for p in base.iterdir() if p.is_dir() and (p / "cgroup.procs").exists()]
    if (base / "cgroup.procs").exists():  # pure v2 host
        dirs.append(base / relative)
    return dirs


@pytest.fixture
def run_container(tmp_path: Path) -> Iterator[Callable[..., Result]]:
    """Run argv in a fresh busybox container built from build_spec(); returns
    its exit code and output.  Cleans up containers, runc state and cgroups."""
    state = tmp_path / "runc-state"
    started: list[str] = []
    host = HostLimits.current()

    def run(*argv: str, options: ContainerOptions | None = None, image: ImageConfig = IMAGE) -> Result:
        cid = f"hawser-spec-{secrets.token_hex(6)}"
        bundle = tmp_path / cid
        rootfs = bundle / "rootfs"
        _make_rootfs(rootfs)
        opts = replace(options or ContainerOptions(), args=argv, cgroups_path=f"/{CGROUP_PARENT}/{cid}")
        spec = build_spec(image, opts, rootfs=str(rootfs), host=host)
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        started.append(cid)
        proc = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return Result(proc)

    yield run

    for cid in started:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", cid], capture_output=True, timeout=30,
                       check=False)
        for d in _cgroup_dirs(f"{CGROUP_PARENT}/{cid}"):
            if d.exists():
                d.rmdir()
    for d in _cgroup_dirs(CGROUP_PARENT):
        try:
            d.rmdir()
        except OSError:
            pass  # absent, or still used by a test running in parallel
    leftovers = [cid for cid in started for d in _cgroup_dirs(f"{CGROUP_PARENT}/{cid}") if d.exists()]
    assert leftovers == [], f"cgroups left behind: {leftovers}"


def test_shell_runs(run_container: Callable[..., Result]) -> None:
    result = run_container("sh", "-c", "echo ok; ls /")
    assert result.code == 0, result
    assert result.out.splitlines()[0] == "ok"
    assert {"bin", "etc", "proc", "dev"} <= set(result.out.split()[1:])


def test_user_from_image_passwd(run_container: Callable[..., Result]) -> None:
    result = run_container("id")
    assert result.code == 0, result
    assert result.out.strip() == "uid=1234(tester) gid=1234(testers) groups=1234(testers),2000(extra)"


def test_user_namespace_refused(run_container: Callable[..., Result]) -> None:
    result = run_container("unshare", "-U", "true")
    assert result.code != 0, result
    assert "Operation not permitted" in result.err


def test_user_namespace_allowed_without_seccomp(run_container: Callable[..., Result]) -> None:
    """Control for the test above: it is the filter that refuses, not the host."""
    result = run_container("unshare", "-U", "true", options=ContainerOptions(seccomp=False))
    if result.code != 0 and "Operation not permitted" in result.err:
        pytest.skip(f"this host refuses user namespaces in containers anyway: {result.err.strip()}")
    assert result.code == 0, result


def test_mount_refused(run_container: Callable[..., Result]) -> None:
    result = run_container("mount", "-t", "tmpfs", "x", "/mnt", options=ContainerOptions(user="0"))
    assert result.code != 0, result
    assert "Operation not permitted" in result.err or "permission denied" in result.err.lower()


def test_mount_allowed_with_sys_admin(run_container: Callable[..., Result]) -> None:
    """cap_add SYS_ADMIN re-allows the mount group: runc accepts the adjusted profile."""
    result = run_container("sh", "-c", "mount -t tmpfs x /mnt && echo mounted",
                           options=ContainerOptions(user="0", cap_add=("SYS_ADMIN",)))
    assert result.code == 0, result
    assert result.out.strip() == "mounted"


def test_kcore_is_unreadable(run_container: Callable[..., Result]) -> None:
    # Masked files are bound to /dev/null (reads yield nothing); a kernel without
    # CONFIG_PROC_KCORE has no file at all.  Either way no kernel memory comes out.
    result = run_container("sh", "-c", "cat /proc/kcore | wc -c", options=ContainerOptions(user="0"))
    assert result.out.strip() == "0", result


def test_masked_paths_hide_host_data(run_container: Callable[..., Result]) -> None:
    """Every masked path this host has: files read empty, directories list empty."""
    present = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi",
                           "/sys/firmware", "/proc/scsi") if os.path.exists(p)]
    if not present:
        pytest.skip("none of the masked paths exists on this host")
    script = "; ".join(f"if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); else echo {p} $(cat {p} | wc -c); fi"
                       for p in present)
    result = run_container("sh", "-c", script, options=ContainerOptions(user="0"))
    assert result.code == 0, result
    assert result.out.split() == [x for p in present for x in (p, "0")]
    control = run_container("sh", "-c", script, options=ContainerOptions(user="0", privileged=True))
    assert control.out.split() != result.out.split(), control  # privileged: nothing masked


def test_read_only_rootfs(run_container: Callable[..., Result]) -> None:
    result = run_container("touch", "/newfile", options=ContainerOptions(user="0", read_only=True))
    assert result.code != 0, result
    assert "Read-only file system" in result.err
    writable = run_container("sh", "-c", "touch /newfile && echo written", options=ContainerOptions(user="0"))
    assert writable.out.strip() == "written", writable


def test_nofile_is_clamped(run_container: Callable[..., Result]) -> None:
    hard = HostLimits.current().rlimits["RLIMIT_NOFILE"][1]
    expected = 1048576 if hard < 0 else min(1048576, hard)
    result = run_container("sh", "-c", "ulimit -n; ulimit -Hn")
    assert result.code == 0, result
    assert result.out.split() == [str(expected), str(expected)]


def test_hostname_in_own_uts_namespace(run_container: Callable[..., Result]) -> None:
    result = run_container("hostname", options=ContainerOptions(hostname="box-1"))
    assert result.code == 0, result
    assert result.out.strip() == "box-1"


def test_host_namespaces(run_container: Callable[..., Result]) -> None:
    """Sharing the host's namespaces leaves them out of the spec; runc accepts that."""
    host_net = os.readlink("/proc/self/ns/net")
    result = run_container("readlink", "/proc/1/ns/net", options=ContainerOptions(
        user="0", namespaces=Namespaces(network="host", ipc="host", uts="host")))
    assert result.code == 0, result
    assert result.out.strip() == host_net


def test_join_network_namespace_by_path(run_container: Callable[..., Result]) -> None:
    """How CRI containers join their sandbox: linux.namespaces[].path."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):  # until unshare has exec'd sleep inside the new namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        expected = os.readlink(path)
        result = run_container("readlink", "/proc/self/ns/net",
                               options=ContainerOptions(namespaces=Namespaces(network=path)))
        assert result.code == 0, result
        assert result.out.strip() == expected
    finally:
        holder.kill()
        holder.wait(timeout=10)
