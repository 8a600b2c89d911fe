"""The defaults every container gets unless a request says otherwise: the
capability set, default mounts, masked and read-only paths, allowed devices.

They follow containerd's (oci/spec.go, the CRI plugin) so that a workload moved
from containerd to hawser sees the same container.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any


# Every capability by number (capability.h); index = capability number.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# containerd's default set: enough to install packages and run daemons that
# drop privileges, nothing that reaches the kernel or other containers.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Kernel interfaces that leak host data or let a container poke hardware; hidden
# behind an empty file/tmpfs by runc.  Not applied to privileged containers.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap",
)

# Host-global knobs under /proc: readable, never writable from a container.
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# containerd gives every container 1048576 open files; clamped to the caller's hard limit.
DEFAULT_NOFILE = 1048576


def default_mounts(*, privileged: bool) -> list[dict[str, Any]]:
    """The filesystems a Linux program expects (config-linux.md "Default Filesystems")."""
    sys_mode = "rw" if privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]},
    ]


def _char(major: int, minor: int | None) -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
    if minor is not None:
        rule["minor"] = minor
    return rule


def default_device_rules(*, privileged: bool) -> list[dict[str, Any]]:
    """Device cgroup rules: deny everything, then allow the devices runc creates
    in every container; privileged containers may use any device."""
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    return [
        {"allow": False, "access": "rwm"},
        # mknod of any node is allowed (CAP_MKNOD is a default capability); opening
        # it is still refused unless listed below, as in containerd.
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
        _char(1, 3),  # /dev/null
        _char(1, 5),  # /dev/zero
        _char(1, 7),  # /dev/full
        _char(1, 8),  # /dev/random
        _char(1, 9),  # /dev/urandom
        _char(5, 0),  # /dev/tty
        _char(5, 2),  # /dev/ptmx
        _char(136, None),  # /dev/pts/*
    ]
