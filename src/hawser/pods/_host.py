"""What a pod makes on the host besides its namespaces: files, /dev/shm,
sysctls, its cgroup; and the checks and connections that enter its namespaces.
All blocking: the pod service calls them through its ``RunBlocking``."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from hawser._logging import get_logger
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, Unavailable
from hawser.metadata import SandboxRecord
from hawser.pods._types import PodSpec, Sandbox

log = get_logger("hawser.pods")

SHM_SIZE = 64 << 20  # docker's and containerd's default /dev/shm
# Sysctls a pod may set, by the namespace they belong to (the kernel's namespaced ones).
_IPC_SYSCTLS = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.")
_NET_SYSCTLS = ("net.",)
# Connecting to localhost inside the pod either succeeds or is refused at once;
# the timeout only guards against a pod whose loopback drops packets.
CONNECT_TIMEOUT = 10.0


def resolv_conf(spec: PodSpec) -> str:
    if not spec.has_dns:
        # No DNS config: the node's own resolver settings, as containerd does.
        try:
            with open("/etc/resolv.conf", encoding="utf-8") as f:
                return f.read()
        except OSError:
            return ""
    lines = [f"nameserver {s}" for s in spec.dns_servers]
    if spec.dns_searches:
        lines.append("search " + " ".join(spec.dns_searches))
    if spec.dns_options:
        lines.append("options " + " ".join(spec.dns_options))
    return "\n".join(lines) + "\n"


def write_file(path: str, text: str) -> str:
    """Write one of the pod's files (hostname, resolv.conf) whole; its path."""
    from hawser.host import atomic_write

    atomic_write(path, text, mode=0o644, durable=False)  # state dir: a reboot empties it anyway
    return path


def mount_shm(path: str) -> None:
    from hawser.host import mount

    os.makedirs(path, mode=0o755, exist_ok=True)
    mount("tmpfs", "shm", path, ["nosuid", "nodev", "noexec", "mode=1777", f"size={SHM_SIZE}"])


def unmount_shm(path: str) -> None:
    from hawser.host import unmount

    unmount(path, detach=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rmdir(path)


def remove_pod_cgroup(cgroup: str) -> None:
    """The pod's cgroup, which runc made for its first container and nobody else removes."""
    from hawser.host import CgroupLayout, remove_cgroup

    try:
        remove_cgroup(CgroupLayout.detect(), cgroup, timeout=1.0)
    except HawserError as exc:  # the pod goes anyway; `hawser system check --repair` finds what stays
        log.warning("pod cgroup not removed", extra={"cgroup": cgroup, "error": str(exc)})


def remove_files(directory: str) -> None:
    from hawser.host import remove_pin_dir

    remove_pin_dir(os.path.join(directory, "ns"))
    unmount_shm(os.path.join(directory, "shm"))
    shutil.rmtree(directory, ignore_errors=True)


def apply_sysctls(sysctls: Mapping[str, str], status: Mapping[str, Any]) -> None:
    """Write namespaced sysctls inside the pod's namespaces. InvalidArgument for
    one that is not namespaced, or whose namespace the pod shares with the host."""
    from hawser.host import run_in_namespaces

    by_kind: dict[str, list[tuple[str, str]]] = {"net": [], "ipc": []}
    for name, value in sysctls.items():
        kind = ("net" if name.startswith(_NET_SYSCTLS) else
                "ipc" if name.startswith(_IPC_SYSCTLS) else None)
        if kind is None:
            raise InvalidArgument(f"sysctl {name} is not namespaced: a pod cannot set it")
        if not status.get(kind):
            raise InvalidArgument(f"sysctl {name} needs the pod's own {kind} namespace, not the host's")
        by_kind[kind].append((name, value))

    def write(items: Sequence[tuple[str, str]]) -> None:
        for name, value in items:
            path = "/proc/sys/" + name.replace(".", "/")
            try:
                with open(path, "w", encoding="ascii") as f:
                    f.write(value)
            except FileNotFoundError:
                raise InvalidArgument(f"unknown sysctl {name}") from None
            except OSError as exc:
                raise InvalidArgument(f"sysctl {name}={value}: {exc.strerror}") from None

    for kind, items in by_kind.items():
        if items:
            run_in_namespaces({kind: status[kind]}, lambda items=items: write(items))  # type: ignore[misc]


def lost_namespaces(record: SandboxRecord) -> list[str]:
    from hawser.host import namespace_kind

    status = record.status
    lost = [kind for kind in ("user", "net", "ipc", "uts")
            if status.get(kind) and namespace_kind(status[kind]) != kind]
    if status.get("infra_holder"):
        from hawser.host import pid_namespace_alive

        if not pid_namespace_alive(int(status["infra_holder"]), int(status["infra_pid"]), record.id):
            lost.append("pid")
    return lost


def connect_in_pod(sandbox: Sandbox, port: int) -> socket.socket:
    """A TCP connection to localhost:port in the pod's network namespace
    (the host's for a hostNetwork pod).  Blocking.  Unavailable when nothing
    listens there; FailedPrecondition when the namespace is gone."""
    from hawser.host import run_in_netns

    def connect() -> socket.socket:
        failures: list[OSError] = []
        # IPv4 first, as kubelet's port forwarding does; ::1 for a server listening on IPv6 only.
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect((host, port))
                sock.setblocking(False)
                return sock
            except OSError as exc:
                sock.close()
                failures.append(exc)
        reason = failures[0].strerror or str(failures[0])
        raise Unavailable(f"cannot connect to localhost:{port} in pod {sandbox.id[:12]}: {reason.lower()}",
                          hint="is a server listening on that port in the pod?")

    if sandbox.netns is None:
        return connect()
    try:
        return run_in_netns(sandbox.netns, connect)
    except Unavailable:
        raise
    except OSError as exc:
        raise FailedPrecondition(f"pod {sandbox.id[:12]}: cannot enter its network namespace: "
                                 f"{exc.strerror or exc}") from None
