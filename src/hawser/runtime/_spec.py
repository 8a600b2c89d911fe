"""Build an OCI runtime spec (a bundle's config.json) from an image
configuration and a request.

Pure: the only I/O is reading the image's user database and checking bind
sources, and everything about the host comes in as HostLimits.  The result is
what runc 1.1 (spec 1.0.2-dev) accepts; the defaults are containerd's.
"""

from __future__ import annotations

import posixpath
import re
import signal
from collections.abc import Mapping, Sequence
from os import path as _ospath

from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig
from hawser.runtime._defaults import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_NOFILE,
    DEFAULT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
    default_device_rules,
    default_mounts,
)
from hawser.runtime._options import (
    BindMount,
    ContainerOptions,
    Device,
    HostLimits,
    Namespaces,
    Resources,
    TmpfsMount,
)
from hawser.runtime._seccomp import seccomp_spec
from hawser.runtime._user import resolve_user

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

# What runc 1.1.5 reports as its spec version (`runc --version`).
OCI_VERSION = "1.0.2-dev"


def build_spec(image: ImageConfig, options: ContainerOptions, *, rootfs: str, host: HostLimits) -> dict[str, Any]:
    """The runtime spec for running ``image`` with ``options`` on ``rootfs``.

    ``rootfs`` is the absolute host path of the container's mounted root; the
    user is looked up in its /etc/passwd and /etc/group.  Raises InvalidArgument
    for anything the request or image gets wrong (no command, unknown user or
    capability, bad mount, sysctl or resource value), with a message naming it.
    """
    if not rootfs.startswith("/"):
        raise InvalidArgument(f"rootfs {rootfs!r} must be an absolute path")
    args = process_args(image, options)
    user = resolve_user(rootfs, options.user if options.user is not None else image.user)
    env = merge_env(image.env, options.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    if options.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    caps = capabilities(options, host)
    ns = options.namespaces
    for kind in ("network", "ipc", "uts", "pid"):
        _check_namespace(kind, getattr(ns, kind))

    # Strict (image_groups False): the user's own gid and the requested groups, none the image's /etc/group gives.
    user_gids = user.additional_gids if options.image_groups else (user.gid,)
    process: dict[str, Any] = {
        "terminal": options.tty,
        "user": {"uid": user.uid, "gid": user.gid,
                 "additionalGids": _additional_gids(user_gids, options.additional_gids)},
        "args": list(args),
        "env": env,
        "cwd": _workdir(image, options),
        # Bounding, effective and permitted only: inheritable and ambient sets
        # would carry capabilities across execve of non-root programs
        # (containerd >= 1.6.18 dropped them for that reason, GHSA-2qjp-425j-52j9).
        "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)},
        "rlimits": _rlimits(host),
        "noNewPrivileges": options.no_new_privileges,
    }
    if options.oom_score_adj is not None:
        process["oomScoreAdj"] = _oom_score_adj(options.oom_score_adj, host)

    linux: dict[str, Any] = {
        "namespaces": _namespaces(ns),
        "resources": _resources(options.resources, privileged=options.privileged),
    }
    if options.userns is not None:
        # The pod's pinned namespace, and its maps: runc checks them against the namespace it joins.
        linux["namespaces"].insert(0, {"type": "user", "path": options.userns.path})
        linux["uidMappings"] = _id_mappings(options.userns.uid_map)
        linux["gidMappings"] = _id_mappings(options.userns.gid_map)
    if options.devices:
        linux["devices"] = _devices(options.devices)
        if not options.privileged:
            linux["resources"]["devices"] += _device_rules(options.devices)
    if options.cgroups_path:
        linux["cgroupsPath"] = _check_cgroups_path(options.cgroups_path)
    if options.sysctls:
        linux["sysctl"] = _sysctls(options.sysctls, ns)
    if not options.privileged:
        linux["maskedPaths"] = _paths(options.masked_paths, MASKED_PATHS, "masked")
        linux["readonlyPaths"] = _paths(options.readonly_paths, READONLY_PATHS, "read-only")
        if options.seccomp:
            if options.seccomp_profile is not None:
                linux["seccomp"] = seccomp_from_profile(options.seccomp_profile, caps, machine=host.machine)
            else:
                linux["seccomp"] = seccomp_spec(caps, machine=host.machine)
    propagation = _rootfs_propagation(options.mounts)
    if propagation:
        linux["rootfsPropagation"] = propagation

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": options.read_only},
    }
    if options.hostname:
        spec["hostname"] = _hostname(options.hostname, ns)
    spec["mounts"] = _mounts(options)
    if options.annotations:
        spec["annotations"] = _annotations(options.annotations)
    spec["linux"] = linux
    return spec


# --- process ------------------------------------------------------------------


def process_args(image: ImageConfig, options: ContainerOptions) -> tuple[str, ...]:
    """Entrypoint + Cmd by docker's rules: an entrypoint override (even an empty
    one) drops the image's Cmd; an args override replaces Cmd only.
    Raises InvalidArgument when nothing is left to run."""
    if options.entrypoint is not None:
        entrypoint = options.entrypoint
        cmd = options.args if options.args is not None else ()
    else:
        entrypoint = image.entrypoint
        cmd = options.args if options.args is not None else image.cmd
    args = (*entrypoint, *cmd)
    if not args:
        raise InvalidArgument("no command: the image has no Entrypoint or Cmd and none was given",
                              hint="give a command after the image name")
    if not args[0]:
        raise InvalidArgument("empty command name")
    return args


def merge_env(image_env: tuple[str, ...], overrides: tuple[str, ...]) -> list[str]:
    """The image's Env overlaid with ``overrides`` ("KEY=VALUE"): a later entry
    with the same key replaces the earlier one in its place, new keys append.
    Raises InvalidArgument for an override without '=' or with an empty key."""
    merged: dict[str, str] = {}
    for entry in image_env:
        merged[entry.partition("=")[0]] = entry
    for entry in overrides:
        key, sep, _ = entry.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid environment variable {entry!r}", hint="use KEY=VALUE")
        if "\0" in entry:
            raise InvalidArgument(f"invalid environment variable {key!r}: contains a NUL byte")
        merged[key] = entry
    return list(merged.values())


def _workdir(image: ImageConfig, options: ContainerOptions) -> str:
    if options.workdir is not None:
        if not options.workdir.startswith("/"):
            raise InvalidArgument(f"invalid working directory {options.workdir!r}: must be an absolute path")
        return posixpath.normpath(options.workdir)
    # Old images may carry a relative WorkingDir; docker reads it from "/".
    return posixpath.normpath(posixpath.join("/", image.working_dir)) if image.working_dir else "/"


def normalize_capability(name: str) -> str:
    """``net_admin``, ``NET_ADMIN`` or ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``.
    Raises InvalidArgument for a name the kernel does not define."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability {name!r}", hint="see capabilities(7); e.g. NET_ADMIN")
    return full


def capabilities(options: ContainerOptions, host: HostLimits) -> tuple[str, ...]:
    """The container's capability set after privileged/cap_add/cap_drop, by
    docker's rules: privileged gets every capability (add/drop ignored); adding
    ALL starts from every capability minus the drops; dropping ALL keeps only
    the adds; otherwise defaults minus drops plus adds.  Capabilities this
    kernel does not know (HostLimits.cap_last_cap) or this process may not
    grant (HostLimits.bounding) are left out; asking for one is InvalidArgument.
    Raises InvalidArgument for an unknown name."""
    adds = [normalize_capability(c) for c in options.cap_add]
    drops = [normalize_capability(c) for c in options.cap_drop]
    known = tuple(c for n, c in enumerate(ALL_CAPABILITIES[: max(0, host.cap_last_cap) + 1])
                  if host.bounding is None or host.bounding >> n & 1)
    if options.privileged:
        return known
    kernel_knows = ALL_CAPABILITIES[: max(0, host.cap_last_cap) + 1]
    for c in adds:
        if c in kernel_knows and c not in known:
            raise InvalidArgument(f"capability {c} cannot be granted: this host withholds it from hawser")
    if "ALL" in adds:
        caps = [c for c in ALL_CAPABILITIES if c not in drops]
    elif "ALL" in drops:
        caps = adds
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops] + [c for c in adds if c not in drops]
    out: list[str] = []
    for c in caps:
        if c in known and c not in out:
            out.append(c)
    return tuple(out)


def _additional_gids(user_gids: tuple[int, ...], extra: tuple[int, ...]) -> list[int]:
    out = list(user_gids)
    for gid in extra:
        if not 0 <= gid <= 0xFFFFFFFE:
            raise InvalidArgument(f"invalid supplementary group {gid}: out of range")
        if gid not in out:
            out.append(gid)
    return out


def _rlimits(host: HostLimits) -> list[dict[str, Any]]:
    # A spec above the caller's hard limit makes runc's setrlimit() fail with
    # EPERM (raising a hard limit needs CAP_SYS_RESOURCE): clamp, don't fail.
    hard = host.rlimits.get("RLIMIT_NOFILE", (-1, -1))[1]
    nofile = DEFAULT_NOFILE if hard < 0 else min(DEFAULT_NOFILE, hard)
    return [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]


def _oom_score_adj(value: int, host: HostLimits) -> int:
    if not -1000 <= value <= 1000:
        raise InvalidArgument(f"invalid oom_score_adj {value}: must be between -1000 and 1000")
    # Lowering it below our own needs CAP_SYS_RESOURCE; the kernel would refuse.
    return max(value, host.min_oom_score_adj)


# --- mounts -------------------------------------------------------------------


def _check_destination(dest: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount destination {dest!r}: must be an absolute path")
    if dest == "/":
        raise InvalidArgument("invalid mount destination '/': the root is the image")
    if posixpath.normpath(dest) != dest or dest.startswith("//") or ".." in dest.split("/"):
        raise InvalidArgument(f"invalid mount destination {dest!r}: must be a normalised path",
                              hint=f"use {posixpath.normpath(dest)!r}")
    return dest


def _bind(m: BindMount) -> dict[str, Any]:
    dest = _check_destination(m.destination)
    if not m.source.startswith("/"):
        raise InvalidArgument(f"invalid mount source {m.source!r} for {dest}: must be an absolute host path")
    if not _ospath.exists(m.source):
        raise InvalidArgument(f"invalid mount source {m.source!r} for {dest}: no such file or directory")
    options = ["rbind", "ro" if m.readonly else "rw", m.propagation]
    if m.recursive_read_only:
        # Kubernetes' rule (cri-api's Mount): read-only asked for explicitly, and no propagation,
        # which would carry new (writable) submounts in.
        if not m.readonly:
            raise InvalidArgument(f"invalid mount {dest}: a recursive read-only mount must be read-only too")
        if m.propagation not in ("private", "rprivate"):
            raise InvalidArgument(f"invalid mount {dest}: a recursive read-only mount must have private "
                                  f"propagation, not {m.propagation}")
        options.insert(2, "rro")  # runc >= 1.1: mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE)
    options += [o for o in m.options if o not in options]
    return {"destination": dest, "type": "bind", "source": m.source, "options": options}


def _tmpfs(m: TmpfsMount) -> dict[str, Any]:
    dest = _check_destination(m.destination)
    given = list(m.options)
    # docker's tmpfs defaults, each one unless the request says the opposite.
    options = [o for o, undo in (("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec")) if undo not in given]
    options.append(f"mode={m.mode:o}")
    if m.size is not None:
        options.append(f"size={m.size}")
    options += [o for o in given if o not in options]
    return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}


def _mounts(options: ContainerOptions) -> list[dict[str, Any]]:
    user = [_bind(m) for m in options.mounts] + [_tmpfs(m) for m in options.tmpfs]
    seen: set[str] = set()
    for m in user:
        if m["destination"] in seen:
            raise InvalidArgument(f"duplicate mount destination {m['destination']}")
        seen.add(m["destination"])
    mounts = [m for m in default_mounts(privileged=options.privileged) if m["destination"] not in seen]
    mounts += user
    # Parents before children (runc mounts in order): by depth, stable, as CRI does.
    mounts.sort(key=lambda m: m["destination"].count("/"))
    return mounts


def _rootfs_propagation(mounts: tuple[BindMount, ...]) -> str:
    """A bidirectional (shared) bind needs the container's root shared too,
    or nothing mounted inside reaches the host (containerd's and docker's
    rule).  A host-to-container (slave) one needs no change: runc makes the
    root rslave by default."""
    if {m.propagation for m in mounts} & {"shared", "rshared"}:
        return "shared"
    return ""


# --- linux --------------------------------------------------------------------


def _paths(given: tuple[str, ...] | None, default: tuple[str, ...], what: str) -> list[str]:
    if given is None:
        return list(default)
    for path in given:
        if not path.startswith("/") or "\0" in path:
            raise InvalidArgument(f"invalid {what} path {path!r}: must be an absolute path")
    return list(dict.fromkeys(given))


def _devices(devices: tuple[Device, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for d in devices:
        if d.path in seen:
            raise InvalidArgument(f"duplicate device path {d.path}")
        seen.add(d.path)
        entry: dict[str, Any] = {"path": d.path, "type": d.type, "major": d.major, "minor": d.minor}
        if d.file_mode is not None:
            entry["fileMode"] = d.file_mode
        if d.uid is not None:
            entry["uid"] = d.uid
        if d.gid is not None:
            entry["gid"] = d.gid
        out.append(entry)
    return out


def _device_rules(devices: tuple[Device, ...]) -> list[dict[str, Any]]:
    return [{"allow": True, "type": d.type if d.type != "p" else "c", "major": d.major, "minor": d.minor,
             "access": d.permissions} for d in devices if d.type != "p"]

_NS_TYPES = {"network": "network", "ipc": "ipc", "uts": "uts", "pid": "pid"}


def _check_namespace(kind: str, value: str | None) -> None:
    if value is None or value == "host":
        return
    if not value.startswith("/") or posixpath.normpath(value) != value:
        raise InvalidArgument(f"invalid {kind} namespace {value!r}", hint='use "host" or an absolute path to join')


def _namespaces(ns: Namespaces) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind in ("pid", "ipc", "uts", "network"):
        value = getattr(ns, kind)
        if value == "host":
            continue  # absent from the list: the container stays in the runtime's namespace
        entry: dict[str, Any] = {"type": _NS_TYPES[kind]}
        if value is not None:
            entry["path"] = value
        out.append(entry)
    out.append({"type": "mount"})
    return out


def _id_mappings(ranges: Sequence[tuple[int, int, int]]) -> list[dict[str, int]]:
    return [{"containerID": inside, "hostID": outside, "size": size} for inside, outside, size in ranges]


def _hostname(hostname: str, ns: Namespaces) -> str:
    if ns.uts is not None:
        # runc refuses to set a hostname outside a private UTS namespace.
        raise InvalidArgument(f"cannot set hostname {hostname!r}: the container shares a UTS namespace",
                              hint="set the hostname where that namespace is created")
    if len(hostname.encode()) > 64 or "/" in hostname or "\0" in hostname:
        raise InvalidArgument(f"invalid hostname {hostname!r}: at most 64 bytes, no '/'")
    return hostname


_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                "kernel.shmmni", "kernel.shm_rmid_forced")
_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(?:[./][a-zA-Z0-9_:@+-]+)+$")


def _sysctls(sysctls: Mapping[str, str], ns: Namespaces) -> dict[str, str]:
    """Only namespaced sysctls: any other one would change the host for everyone."""
    out: dict[str, str] = {}
    for key, value in sysctls.items():
        if not _SYSCTL_KEY.match(key):
            raise InvalidArgument(f"invalid sysctl {key!r}")
        if not isinstance(value, str) or "\0" in value or "\n" in value:
            raise InvalidArgument(f"invalid value for sysctl {key}: {value!r}")
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ns.ipc == "host":
                raise InvalidArgument(f"sysctl {key} is not allowed with the host's IPC namespace")
        elif key.startswith("net."):
            if ns.network == "host":
                raise InvalidArgument(f"sysctl {key} is not allowed with the host's network namespace")
        elif key == "kernel.domainname":
            if ns.uts == "host":
                raise InvalidArgument(f"sysctl {key} is not allowed with the host's UTS namespace")
        else:
            raise InvalidArgument(f"sysctl {key} is not namespaced: it would change the host",
                                  hint="allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*")
        out[key] = value
    return out


_CPUSET = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$")
_MIN_MEMORY = 6 << 20  # docker's floor: below it the container's own runtime start-up OOMs


def _resources(res: Resources, *, privileged: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"devices": default_device_rules(privileged=privileged)}
    cpu: dict[str, Any] = {}
    if res.cpu_shares is not None:
        if not 2 <= res.cpu_shares <= 262144:
            raise InvalidArgument(f"invalid cpu shares {res.cpu_shares}: must be between 2 and 262144")
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota is not None:
        if res.cpu_quota != -1 and res.cpu_quota < 1000:
            raise InvalidArgument(f"invalid cpu quota {res.cpu_quota}: must be at least 1000 (µs) or -1")
        cpu["quota"] = res.cpu_quota
    if res.cpu_period is not None:
        if not 1000 <= res.cpu_period <= 1_000_000:
            raise InvalidArgument(f"invalid cpu period {res.cpu_period}: must be between 1000 and 1000000 (µs)")
        cpu["period"] = res.cpu_period
    for name, value in (("cpus", res.cpuset_cpus), ("mems", res.cpuset_mems)):
        if value is not None:
            if not _CPUSET.match(value):
                raise InvalidArgument(f"invalid cpuset {name} {value!r}", hint="use a list like 0-3,6")
            cpu[name] = value
    if cpu:
        out["cpu"] = cpu
    memory: dict[str, Any] = {}
    if res.memory_limit is not None:
        if res.memory_limit < _MIN_MEMORY:
            raise InvalidArgument(f"invalid memory limit {res.memory_limit}: the minimum is 6MiB")
        memory["limit"] = res.memory_limit
    if res.memory_swap is not None:
        if res.memory_limit is None:
            raise InvalidArgument("a memory+swap limit needs a memory limit too")
        if res.memory_swap != -1 and res.memory_swap < res.memory_limit:
            raise InvalidArgument(f"invalid memory+swap limit {res.memory_swap}: below the memory limit "
                                  f"{res.memory_limit}", hint="memory+swap counts memory too; -1 is unlimited swap")
        memory["swap"] = res.memory_swap
    if memory:
        out["memory"] = memory
    if res.pids_limit is not None:
        if res.pids_limit != -1 and res.pids_limit <= 0:
            raise InvalidArgument(f"invalid pids limit {res.pids_limit}: must be positive or -1 (unlimited)")
        out["pids"] = {"limit": res.pids_limit}
    return out


def update_spec_resources(spec: dict[str, Any], res: Resources) -> dict[str, Any]:
    """Merge the limits ``res`` sets (None fields are left alone) into
    ``spec``'s ``linux.resources``, in place; returns the merged resources.
    Validated as at create (InvalidArgument).  A new memory limit keeps the
    container's swap policy: no swap stays no swap (memory+swap follows the
    limit), unlimited swap stays unlimited."""
    resources: dict[str, Any] = spec.setdefault("linux", {}).setdefault("resources", {})
    fresh = _resources(res, privileged=False)
    fresh.pop("devices")
    cpu = dict(resources.get("cpu") or {})
    cpu.update(fresh.get("cpu", {}))
    if cpu:
        resources["cpu"] = cpu
    memory = dict(resources.get("memory") or {})
    new_memory = fresh.get("memory", {})
    if "limit" in new_memory and "swap" not in new_memory and "swap" in memory:
        old_limit, old_swap = memory.get("limit"), memory["swap"]
        if old_swap != -1 and (old_swap == old_limit or old_swap < new_memory["limit"]):
            new_memory["swap"] = new_memory["limit"]
    memory.update(new_memory)
    if "swap" in memory and "limit" in memory and memory["swap"] != -1 and memory["swap"] < memory["limit"]:
        raise InvalidArgument(f"invalid memory+swap limit {memory['swap']}: below the memory limit {memory['limit']}")
    if memory:
        resources["memory"] = memory
    if "pids" in fresh:
        resources["pids"] = fresh["pids"]
    return resources


def _check_cgroups_path(path: str) -> str:
    if path.startswith("/"):
        if posixpath.normpath(path) != path or path.startswith("//") or path == "/":
            raise InvalidArgument(f"invalid cgroups path {path!r}: must be a normalised absolute path")
        return path
    parts = path.split(":")
    if len(parts) == 3 and parts[0].endswith(".slice") and parts[2]:
        return path  # systemd driver form: slice:prefix:name
    raise InvalidArgument(f"invalid cgroups path {path!r}", hint='use "/parent/name" or "slice:prefix:name"')


def _annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    for key, value in annotations.items():
        if not key or not isinstance(value, str):
            raise InvalidArgument(f"invalid annotation {key!r}: keys must be non-empty and values strings")
    return dict(annotations)


# --- seccomp profiles in docker's format (CRI Localhost) -------------------------

SECCOMP_ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
SECCOMP_OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
})
# uname -m -> libseccomp's name of the native architecture.
_SECCOMP_NATIVE = {
    "x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "armv7l": "SCMP_ARCH_ARM",
    "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
    "i686": "SCMP_ARCH_X86", "mips64": "SCMP_ARCH_MIPS64", "loongarch64": "SCMP_ARCH_LOONGARCH64",
}
# uname -m -> Go's GOARCH: what docker's profiles name in includes/excludes "arches".
_GO_ARCH = {
    "x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv64": "riscv64", "i686": "386", "mips64": "mips64", "loongarch64": "loong64",
}


def _seccomp_error(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid seccomp profile: {why}",
                           hint="use the JSON format of docker's and containerd's profiles")


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _seccomp_error(f"{where} must be a list of strings")
    return list(value)


def _applies(rule: Mapping[str, Any], caps: frozenset[str], machine: str, *, include: bool) -> bool:
    """Whether a rule's includes (all must hold) or excludes (any excludes)
    match.  Architectures are named as Go does (amd64, arm64), as in
    docker's and containerd's profiles; libseccomp's names are accepted too."""
    key = "includes" if include else "excludes"
    cond = rule.get(key) or {}
    if not isinstance(cond, Mapping):
        raise _seccomp_error(f"{key} must be an object")
    want_caps = _str_list(cond.get("caps", []), f"{key}.caps")
    want_arches = {a.lower().removeprefix("scmp_arch_") for a in _str_list(cond.get("arches", []),
                                                                            f"{key}.arches")}
    ours = {_GO_ARCH.get(machine, machine), _SECCOMP_NATIVE.get(machine, "").lower().removeprefix("scmp_arch_")}
    if include:
        return all(c in caps for c in want_caps) and (not want_arches or bool(ours & want_arches))
    return any(c in caps for c in want_caps) or bool(ours & want_arches)


def _seccomp_arg(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise _seccomp_error(f"{where} must be an object")
    index, value, op = obj.get("index"), obj.get("value", 0), obj.get("op")
    value_two = obj.get("valueTwo", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
        raise _seccomp_error(f"{where}.index must be 0..5")
    for name, number in (("value", value), ("valueTwo", value_two)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise _seccomp_error(f"{where}.{name} must be a non-negative integer")
    if op not in SECCOMP_OPERATORS:
        raise _seccomp_error(f"{where}.op {op!r} is not one of " + ", ".join(sorted(SECCOMP_OPERATORS)))
    out: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two:
        out["valueTwo"] = value_two
    return out


def _errno_ret(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _seccomp_error(f"{where}.{key} must be a non-negative integer")
    return value


def seccomp_from_profile(profile: Mapping[str, Any], capabilities: tuple[str, ...] | frozenset[str], *,
                         machine: str) -> dict[str, Any]:
    """``linux.seccomp`` from a profile in docker's JSON format: the
    ``archMap`` entry of this machine's architecture, the rules whose
    ``includes``/``excludes`` (capabilities, architectures) hold for this
    container.  An OCI ``linux.seccomp`` document is accepted as it is (it
    is docker's format without those extras).  Raises InvalidArgument for
    anything malformed, naming the field."""
    if not isinstance(profile, Mapping):
        raise _seccomp_error("the document must be a JSON object")
    default = profile.get("defaultAction")
    if default not in SECCOMP_ACTIONS:
        raise _seccomp_error(f"defaultAction {default!r} is not one of " + ", ".join(sorted(SECCOMP_ACTIONS)))
    native = _SECCOMP_NATIVE.get(machine)
    out: dict[str, Any] = {"defaultAction": default}
    errno_ret = _errno_ret(profile, "defaultErrnoRet", "profile")
    if errno_ret is not None:
        out["defaultErrnoRet"] = errno_ret
    arches: list[str] = []
    if "archMap" in profile and profile["archMap"] is not None:
        if not isinstance(profile["archMap"], list):
            raise _seccomp_error("archMap must be a list")
        for entry in profile["archMap"]:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("architecture"), str):
                raise _seccomp_error("archMap entries need an architecture")
            subs = _str_list(entry.get("subArchitectures") or [], "archMap.subArchitectures")
            if entry["architecture"] == native:
                arches = [entry["architecture"], *subs]
    elif profile.get("architectures") is not None:
        arches = _str_list(profile["architectures"], "architectures")
    if arches:
        out["architectures"] = arches
    if profile.get("flags") is not None:
        out["flags"] = _str_list(profile["flags"], "flags")
    caps = frozenset(capabilities)
    rules: list[dict[str, Any]] = []
    syscalls = profile.get("syscalls")
    if syscalls is None:
        syscalls = []
    if not isinstance(syscalls, list):
        raise _seccomp_error("syscalls must be a list")
    for n, rule in enumerate(syscalls):
        where = f"syscalls[{n}]"
        if not isinstance(rule, Mapping):
            raise _seccomp_error(f"{where} must be an object")
        names = _str_list(rule["names"], f"{where}.names") if rule.get("names") is not None else []
        if isinstance(rule.get("name"), str) and rule["name"]:
            names.append(rule["name"])
        if not names:
            raise _seccomp_error(f"{where} names no syscall")
        action = rule.get("action")
        if action not in SECCOMP_ACTIONS:
            raise _seccomp_error(f"{where}.action {action!r} is not a seccomp action")
        args = rule.get("args") or []
        if not isinstance(args, list):
            raise _seccomp_error(f"{where}.args must be a list")
        converted: dict[str, Any] = {"names": names, "action": action}
        if args:
            converted["args"] = [_seccomp_arg(a, f"{where}.args[{i}]") for i, a in enumerate(args)]
        rule_errno = _errno_ret(rule, "errnoRet", where)
        if rule_errno is not None:
            converted["errnoRet"] = rule_errno
        if not _applies(rule, caps, machine, include=True) or _applies(rule, caps, machine, include=False):
            continue
        rules.append(converted)
    out["syscalls"] = rules
    return out


# --- parsing helpers used by the CLI and CRI ------------------------------------

_SIGRT = re.compile(r"^RTM(IN|AX)(?:([+-])(\d+))?$")


def parse_signal(text: str) -> int:
    """``SIGTERM``, ``TERM``, ``term``, ``15``, ``RTMIN+3`` -> the signal number.
    Raises InvalidArgument for anything else."""
    raw = text.strip().upper()
    if raw.isdigit():
        number = int(raw)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise InvalidArgument(f"invalid signal {text!r}: numbers run from 1 to {int(signal.SIGRTMAX)}")
    name = raw.removeprefix("SIG")
    rt = _SIGRT.match(name)
    if rt:
        base = signal.SIGRTMIN if rt.group(1) == "IN" else signal.SIGRTMAX
        offset = int(rt.group(3) or 0) * (-1 if rt.group(2) == "-" else 1)
        number = int(base) + offset
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
        raise InvalidArgument(f"invalid signal {text!r}: outside SIGRTMIN..SIGRTMAX")
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        raise InvalidArgument(f"invalid signal {text!r}", hint="use a name like SIGTERM or a number") from None


def named_stop_signal(image: ImageConfig, options: ContainerOptions) -> int | None:
    """The stop signal the request names, else the image's StopSignal; None
    when neither names one (stop then sends SIGTERM, and the CRI reports
    RUNTIME_DEFAULT, as containerd does).  Raises InvalidArgument if unparsable."""
    text = options.stop_signal or image.stop_signal
    return parse_signal(text) if text else None


def stop_signal(image: ImageConfig, options: ContainerOptions) -> int:
    """The signal that asks the container to stop: the request's, else the
    image's StopSignal, else SIGTERM.  Raises InvalidArgument if unparsable."""
    named = named_stop_signal(image, options)
    return int(signal.SIGTERM) if named is None else named


_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp])?(i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory(text: str) -> int:
    """A size in docker's notation -> bytes: ``100`` (bytes), ``512k``, ``64m``,
    ``1.5g``, ``2GiB``; units are binary.  Raises InvalidArgument otherwise."""
    match = _MEMORY.match(text.strip())
    if not match or (match.group(3) and match.group(3).lower() == "ib" and not match.group(2)):
        raise InvalidArgument(f"invalid size {text!r}", hint="use a number and an optional unit b, k, m, g, t: 512m")
    from decimal import Decimal  # exact for 1.1g; imported only when a size is given

    unit = _UNITS[(match.group(2) or "").lower()]
    return int(Decimal(match.group(1)) * unit)


CPU_PERIOD = 100_000  # µs, the kernel's default CFS period


def parse_cpus(text: str) -> tuple[int, int]:
    """docker's --cpus: ``0.5`` -> (quota 50000, period 100000).
    Raises InvalidArgument for non-numbers and values under 0.01 CPU."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidArgument(f"invalid CPU count {text!r}", hint="use a decimal number such as 1.5") from None
    if not value.is_finite() or value <= 0:
        raise InvalidArgument(f"invalid CPU count {text!r}: must be positive")
    quota = int(value * CPU_PERIOD)
    if quota < 1000:
        raise InvalidArgument(f"invalid CPU count {text!r}: the minimum is 0.01")
    return quota, CPU_PERIOD
