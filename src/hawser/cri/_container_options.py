"""A CRI ContainerConfig, in its pod, as hawser's ContainerOptions.

``plan_container`` is the whole mapping, as containerd's CRI plugin and CRI-O
read the request (their rules are quoted where they matter):

- command/args: the CRI ``command`` is the image's Entrypoint, ``args`` its
  Cmd ("Command to execute (i.e., entrypoint for docker)"; "Args for the
  Command (i.e., command for docker)");
- the pod's namespaces are joined by their pinned paths (network, IPC, UTS
  always; pid per NamespaceMode: CONTAINER own, POD the pod's, NODE the
  host's, TARGET another container's), and its /etc/resolv.conf,
  /etc/hostname and /dev/shm are bound in; HOSTNAME is the pod's;
- mounts (propagation PRIVATE -> rprivate, HOST_TO_CONTAINER -> rslave,
  BIDIRECTIONAL -> rshared; a missing host directory is created, as
  containerd and CRI-O do; recursive_read_only only with readonly and
  PRIVATE, kubelet's rule); a mount with ``image`` set is an image volume
  (containerd's rules: no host path, read-only; the runtime mounts it, and
  its ``image_sub_path``), devices, the security context (capabilities,
  privileged, user and groups, masked and read-only paths, seccomp) and the
  Linux resources.

Pure but for what ``HostFiles`` reads (seccomp profiles, device nodes, host
paths): tests inject a fake.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import signal
from collections.abc import Mapping
from typing import Any, Protocol

from cri_api.v1 import api_pb2

from hawser._dataclass import dataclass, field
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID, Sandbox
from hawser.runtime import (
    BindMount,
    ContainerManager,
    ContainerOptions,
    Device,
    ImageVolume,
    Namespaces,
    Resources,
    UserNamespace,
    devices_from_host,
    host_devices,
)

KIND_CONTAINER = "container"

# Keys of the CRI's facts in a container record's config (beside the options).
CRI_METADATA = "cri.metadata"
CRI_SANDBOX_ID = "cri.sandbox_id"
CRI_IMAGE = "cri.image"
CRI_IMAGE_REF = "cri.image_ref"
CRI_LABELS = "cri.labels"
CRI_ANNOTATIONS = "cri.annotations"
CRI_MOUNTS = "cri.mounts"
CRI_LOG_PATH = "cri.log_path"
CRI_STDIN_ONCE = "cri.stdin_once"
CRI_CONFIG = "cri.config"

_PROPAGATION = {
    api_pb2.PROPAGATION_PRIVATE: "rprivate",
    api_pb2.PROPAGATION_HOST_TO_CONTAINER: "rslave",
    api_pb2.PROPAGATION_BIDIRECTIONAL: "rshared",
}


class HostFiles(Protocol):
    """What the mapping reads from the host."""

    def read(self, path: str) -> bytes:
        """A file's bytes (a seccomp profile). NotFound if missing."""
        ...

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (a mount's host path)."""
        ...

    def devices(self, host_path: str, container_path: str, permissions: str) -> tuple[Device, ...]:
        """The device node(s) at ``host_path``. InvalidArgument if there are none."""
        ...

    def host_devices(self) -> tuple[Device, ...]:
        """Every device of the host's /dev (for privileged containers)."""
        ...

    def propagation(self, path: str) -> str:
        """The propagation of the host mount ``path`` is on: "shared",
        "slave" or "private" (the first two may be both: "shared")."""
        ...


class RealHostFiles:
    """HostFiles over the real filesystem."""

    def read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read(16 << 20)
        except FileNotFoundError:
            raise NotFound(f"file {path} not found") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def devices(self, host_path: str, container_path: str, permissions: str) -> tuple[Device, ...]:
        return devices_from_host(host_path, container_path, permissions)

    def host_devices(self) -> tuple[Device, ...]:
        return host_devices()

    def propagation(self, path: str) -> str:
        real = os.path.realpath(path)
        best, kind = "", "private"
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 7:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                # Later lines of the same mount point are mounted over the earlier ones.
                if inside and len(point) >= len(best):
                    best = point
                    optional = fields[6:fields.index("-")] if "-" in fields else []
                    kind = ("shared" if any(o.startswith("shared:") for o in optional) else
                            "slave" if any(o.startswith("master:") for o in optional) else "private")
        return kind


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerPlan:
    """What ContainerManager.create is given for one CRI container."""

    name: str
    options: ContainerOptions
    labels: Mapping[str, str]  # the record's labels: which pod, what kind
    extra_config: Mapping[str, Any]  # the CRI's facts ("cri.*" keys)
    log_path: str | None
    cgroup_parent: str
    # Host paths of mounts that do not exist yet: created as directories before the create.
    host_dirs: tuple[str, ...] = ()
    cri_labels: Mapping[str, str] = field(default_factory=dict)


def container_name(metadata: api_pb2.ContainerMetadata, sandbox: Sandbox) -> str:
    """kubelet's and containerd's unique name: <name>_<pod>_<namespace>_<pod uid>_<attempt>."""
    return "_".join((metadata.name, sandbox.name, sandbox.namespace, sandbox.uid, str(metadata.attempt)))


def plan_container(config: api_pb2.ContainerConfig, sandbox: Sandbox, *, files: HostFiles,
                   target_pid: int | None = None) -> ContainerPlan:
    """The plan for creating ``config`` in ``sandbox``.

    ``target_pid``: the pid of the container a TARGET pid namespace names
    (the caller looks it up: it must run in the same pod).  Raises
    InvalidArgument for a malformed request (no metadata or image, a
    relative container path, an image volume asked writable, an unknown
    seccomp profile type...).  Image volumes name their images as the request
    does: the caller resolves them in the store."""
    if not config.HasField("metadata") or not config.metadata.name:
        raise InvalidArgument("CreateContainer: config.metadata.name is empty")
    if not config.HasField("image") or not config.image.image:
        raise InvalidArgument("CreateContainer: config.image.image is empty")
    linux = config.linux
    sc = linux.security_context
    if sc.privileged and not sandbox.privileged:
        raise InvalidArgument("a privileged container needs a privileged pod sandbox",
                              hint="set privileged in the pod's security context")
    readonly_root = sc.readonly_rootfs
    mounts, host_dirs, volumes = _mounts(config.mounts, files)
    taken = {m.destination for m in mounts} | {v.destination for v in volumes}
    mounts += _pod_mounts(sandbox, taken, readonly=readonly_root)
    devices = _devices(config.devices, files)
    if sc.privileged:
        requested = {d.path for d in devices}
        devices += tuple(d for d in files.host_devices() if d.path not in requested)
    seccomp, profile = _seccomp(sc, files)
    env = []
    if sandbox.hostname:
        env.append(f"HOSTNAME={sandbox.hostname}")  # first: the request may override it
    env += [f"{kv.key}={kv.value}" for kv in config.envs]
    options = ContainerOptions(
        entrypoint=tuple(config.command) if config.command else None,
        args=tuple(config.args) if config.args else None,
        env=tuple(env),
        workdir=config.working_dir or None,
        user=_user(sc),
        additional_gids=tuple(sc.supplemental_groups),
        image_groups=not _strict_groups(sc, sandbox),
        tty=config.tty,
        stdin=config.stdin,
        stdin_once=config.stdin_once,
        read_only=readonly_root,
        mounts=tuple(mounts),
        image_volumes=tuple(volumes),
        cap_add=tuple(sc.capabilities.add_capabilities),
        cap_drop=tuple(sc.capabilities.drop_capabilities),
        privileged=sc.privileged,
        no_new_privileges=sc.no_new_privs,
        resources=resources_from_cri(linux.resources),
        oom_score_adj=linux.resources.oom_score_adj if linux.HasField("resources") else None,
        annotations=dict(config.annotations),
        namespaces=_namespaces(sc.namespace_options, sandbox, target_pid),
        seccomp=seccomp,
        seccomp_profile=profile,
        stop_signal=_stop_signal(config.stop_signal),
        devices=devices,
        # kubelet sends the default lists for procMount Default and none for
        # Unmasked, which it allows only with hostUsers: false; without a user
        # namespace, none (crictl's) means the runtime's defaults, as in containerd.
        masked_paths=tuple(sc.masked_paths) or (() if sandbox.userns else None),
        readonly_paths=tuple(sc.readonly_paths) or (() if sandbox.userns else None),
        userns=_user_namespace(sc.namespace_options, sandbox),
    )
    log_path = None
    if sandbox.log_directory and config.log_path:
        log_path = posixpath.normpath(posixpath.join(sandbox.log_directory, config.log_path))
        if not log_path.startswith("/"):
            raise InvalidArgument(f"invalid log path {config.log_path!r} in log directory {sandbox.log_directory!r}:"
                                  " not an absolute path")
    extra = {
        CRI_METADATA: {"name": config.metadata.name, "attempt": config.metadata.attempt},
        CRI_SANDBOX_ID: sandbox.id,
        CRI_IMAGE: config.image.image,
        CRI_LABELS: dict(config.labels),
        CRI_ANNOTATIONS: dict(config.annotations),
        CRI_MOUNTS: [mount_json(m) for m in config.mounts],
        CRI_LOG_PATH: log_path or "",
        CRI_STDIN_ONCE: config.stdin_once,
        CRI_CONFIG: _config_json(config),
        # The pod's runtime handler runs its containers (ContainerManager.create reads it).
        ContainerManager.RUNTIME_HANDLER: sandbox.runtime or sandbox.runtime_handler,
    }
    return ContainerPlan(
        name=container_name(config.metadata, sandbox), options=options,
        labels={LABEL_SANDBOX_ID: sandbox.id, LABEL_KIND: KIND_CONTAINER}, extra_config=extra,
        log_path=log_path, cgroup_parent=sandbox.cgroup_parent, host_dirs=tuple(host_dirs),
        cri_labels=dict(config.labels))


def _stop_signal(value: api_pb2.Signal.ValueType) -> str | None:
    """The request's stop signal as the runtime reads a signal name (None:
    RUNTIME_DEFAULT, the image's StopSignal or SIGTERM).  The CRI spells the
    real-time ones SIGRTMINPLUS3 and SIGRTMAXMINUS2: SIGRTMIN+3, SIGRTMAX-2."""
    if not value:
        return None
    try:
        name = api_pb2.Signal.Name(value)
    except ValueError:  # proto3 enums are open: a client may send any number
        raise InvalidArgument(f"CreateContainer: unknown stop signal {value}") from None
    return name.replace("PLUS", "+").replace("MINUS", "-")


# The CRI's real-time signals: SIGRTMIN, SIGRTMINPLUS1..15, SIGRTMAXMINUS14..1, SIGRTMAX
# (glibc's numbering, 34..64, as Go's and Python's signal modules have it).
_RT_LOW = 15


def cri_signal(number: object) -> api_pb2.Signal.ValueType:
    """A signal number (a record's ``stop_signal``) as the CRI's Signal;
    RUNTIME_DEFAULT for none (not an int) or one the enum has no name for."""
    if not isinstance(number, int) or isinstance(number, bool):
        return api_pb2.RUNTIME_DEFAULT
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if rtmin <= number <= rtmax:
        if number - rtmin <= _RT_LOW:
            name = "SIGRTMIN" + (f"PLUS{number - rtmin}" if number > rtmin else "")
        else:
            name = "SIGRTMAX" + (f"MINUS{rtmax - number}" if number < rtmax else "")
    else:
        try:
            name = signal.Signals(number).name
        except ValueError:
            return api_pb2.RUNTIME_DEFAULT
    try:
        return api_pb2.Signal.Value(name)
    except ValueError:
        return api_pb2.RUNTIME_DEFAULT


# --- resources --------------------------------------------------------------------


def resources_from_cri(res: api_pb2.LinuxContainerResources) -> Resources:
    """The CRI's limits: 0 (or "") means "not specified". Hugepages and cgroup
    v2 ``unified`` entries are not applied (this host's cgroups are v1)."""
    memory = res.memory_limit_in_bytes or None
    swap = res.memory_swap_limit_in_bytes or None
    return Resources(
        cpu_period=res.cpu_period or None, cpu_quota=res.cpu_quota or None, cpu_shares=res.cpu_shares or None,
        cpuset_cpus=res.cpuset_cpus or None, cpuset_mems=res.cpuset_mems or None, memory_limit=memory,
        # memory+swap without a memory limit means nothing to the kernel; dropped as containerd does.
        memory_swap=swap if memory is not None else None,
    )


def resources_to_cri(spec: Mapping[str, Any]) -> api_pb2.LinuxContainerResources:
    """The limits a runtime spec holds, as the CRI reports them."""
    linux = spec.get("linux") or {}
    resources = linux.get("resources") or {}
    cpu, memory = resources.get("cpu") or {}, resources.get("memory") or {}
    out = api_pb2.LinuxContainerResources(
        cpu_period=int(cpu.get("period") or 0), cpu_quota=int(cpu.get("quota") or 0),
        cpu_shares=int(cpu.get("shares") or 0), cpuset_cpus=str(cpu.get("cpus") or ""),
        cpuset_mems=str(cpu.get("mems") or ""), memory_limit_in_bytes=int(memory.get("limit") or 0),
        memory_swap_limit_in_bytes=int(memory.get("swap") or 0),
        oom_score_adj=int((spec.get("process") or {}).get("oomScoreAdj") or 0),
    )
    return out


# --- security ---------------------------------------------------------------------


def _user(sc: api_pb2.LinuxContainerSecurityContext) -> str | None:
    has_uid = sc.HasField("run_as_user")
    if has_uid and sc.run_as_username:
        raise InvalidArgument("run_as_user and run_as_username are both set: only one may be")
    if sc.HasField("run_as_group") and not (has_uid or sc.run_as_username):
        # api.proto: "run_as_group should only be specified when run_as_user or
        # run_as_username is specified; otherwise, the runtime MUST error."
        raise InvalidArgument("run_as_group is set without run_as_user or run_as_username")
    if has_uid and sc.run_as_user.value < 0:
        raise InvalidArgument(f"invalid run_as_user {sc.run_as_user.value}: must not be negative")
    if sc.HasField("run_as_group") and sc.run_as_group.value < 0:
        raise InvalidArgument(f"invalid run_as_group {sc.run_as_group.value}: must not be negative")
    user = str(sc.run_as_user.value) if has_uid else sc.run_as_username
    if not user:
        return None  # the image's USER
    if ":" in user:
        raise InvalidArgument(f"invalid run_as_username {user!r}: a user name has no ':'")
    if sc.HasField("run_as_group"):
        user += f":{sc.run_as_group.value}"
    return user


_GROUPS_POLICIES = {api_pb2.Merge: "Merge", api_pb2.Strict: "Strict"}


def _strict_groups(sc: api_pb2.LinuxContainerSecurityContext, sandbox: Sandbox) -> bool:
    """Whether SupplementalGroupsPolicy is Strict: only the user's gid and the
    request's supplemental groups, none of those the image's /etc/group lists
    the user in (Merge, the default, adds them, as containerd and CRI-O do).

    kubelet sets the pod's policy on the pod sandbox and on each of its
    containers; a pod sandbox that asks Strict makes its containers Strict
    too (Merge is the enum's zero: a container cannot say it was not given one).
    An unknown policy is InvalidArgument, as containerd answers it."""
    policy = sc.supplemental_groups_policy
    if policy not in _GROUPS_POLICIES:
        raise InvalidArgument(f"CreateContainer: unknown supplemental_groups_policy {policy}",
                              hint="use Merge or Strict")
    request = sandbox.config.get("request") or {}  # the PodSandboxConfig as protobuf JSON
    pod_sc = (request.get("linux") or {}).get("security_context") or {}
    pod_policy = pod_sc.get("supplemental_groups_policy", "Merge")  # protobuf JSON: a name, or a number unknown
    if pod_policy not in _GROUPS_POLICIES.values():
        raise InvalidArgument(f"CreateContainer: the pod sandbox's supplemental_groups_policy {pod_policy!r} "
                              "is unknown", hint="use Merge or Strict")
    return policy == api_pb2.Strict or pod_policy == "Strict"


def _seccomp(sc: api_pb2.LinuxContainerSecurityContext, files: HostFiles) -> tuple[bool, Mapping[str, Any] | None]:
    """(confined, Localhost profile or None for hawser's default).

    The ``seccomp`` field wins over the deprecated ``seccomp_profile_path``;
    with neither, api.proto's default: "" is "identical with unconfined"."""
    if sc.privileged:
        return False, None
    if sc.HasField("seccomp"):
        kind = sc.seccomp.profile_type
        if kind == api_pb2.SecurityProfile.RuntimeDefault:
            return True, None
        if kind == api_pb2.SecurityProfile.Unconfined:
            return False, None
        if kind == api_pb2.SecurityProfile.Localhost:
            return True, load_seccomp_profile(sc.seccomp.localhost_ref, files)
        raise InvalidArgument(f"unknown seccomp profile type {kind}",
                              hint="use RuntimeDefault, Unconfined or Localhost")
    path = sc.seccomp_profile_path
    if path in ("", "unconfined"):
        return False, None
    if path in ("runtime/default", "docker/default"):
        return True, None
    if path.startswith("localhost/"):
        return True, load_seccomp_profile(path.removeprefix("localhost/"), files)
    raise InvalidArgument(f"unknown seccomp profile {path!r}",
                          hint="use runtime/default, unconfined or localhost/<absolute path>")


def load_seccomp_profile(path: str, files: HostFiles) -> Mapping[str, Any]:
    """A Localhost profile: an absolute path to a JSON profile, checked now so
    a bad one fails the CreateContainer that names it."""
    from hawser.runtime import seccomp_from_profile

    if not path.startswith("/"):
        raise InvalidArgument(f"invalid seccomp profile path {path!r}: must be absolute")
    try:
        data = files.read(path)
    except NotFound:
        raise InvalidArgument(f"seccomp profile {path} does not exist") from None
    try:
        profile = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"seccomp profile {path} is not JSON: {exc}") from None
    try:
        seccomp_from_profile(profile, (), machine="x86_64")
    except InvalidArgument as exc:
        raise InvalidArgument(f"seccomp profile {path}: {exc.message}", hint=exc.hint) from None
    if not isinstance(profile, dict):
        raise InvalidArgument(f"seccomp profile {path} is not a JSON object")
    return profile


# --- namespaces -------------------------------------------------------------------


def _namespaces(options: api_pb2.NamespaceOption, sandbox: Sandbox, target_pid: int | None) -> Namespaces:
    """Network and IPC are the pod's (or the host's: NODE); UTS follows the
    network, as in containerd; pid per its mode.  A pod path of None is the
    host's namespace (hostNetwork, hostIPC)."""
    def pod(path: str | None) -> str:
        return path if path is not None else "host"

    network = "host" if options.network == api_pb2.NODE else pod(sandbox.netns)
    ipc = "host" if options.ipc == api_pb2.NODE else pod(sandbox.ipc)
    uts = "host" if options.network == api_pb2.NODE else pod(sandbox.uts)
    mode = options.pid
    pid: str | None
    if mode == api_pb2.NODE:
        pid = "host"
    elif mode == api_pb2.CONTAINER:
        pid = None
    elif mode == api_pb2.POD:
        # A pod without a shared pid namespace: its own one, unless the pod is in the host's.
        pid = sandbox.pid if sandbox.pid is not None else ("host" if sandbox.host_pid else None)
    elif mode == api_pb2.TARGET:
        if not options.target_id:
            raise InvalidArgument("pid namespace mode TARGET needs namespace_options.target_id")
        if target_pid is None:
            raise FailedPrecondition(f"target container {options.target_id} has no running process")
        pid = f"/proc/{target_pid}/ns/pid"
    else:
        raise InvalidArgument(f"unknown pid namespace mode {mode}")
    return Namespaces(network=network, ipc=ipc, uts=uts, pid=pid)


def _user_namespace(options: api_pb2.NamespaceOption, sandbox: Sandbox) -> UserNamespace | None:
    """The pod's user namespace, which all its containers share: a
    container's ``userns_options``, when set, must say what the pod's does
    (mode POD with the pod's maps, or NODE in a pod without one)."""
    if options.HasField("userns_options"):
        userns = options.userns_options
        maps = (tuple((m.container_id, m.host_id, m.length) for m in userns.uids),
                tuple((m.container_id, m.host_id, m.length) for m in userns.gids))
        if userns.mode == api_pb2.POD:
            if sandbox.userns is None:
                raise InvalidArgument("CreateContainer: userns_options mode POD in a pod without a user namespace")
            if any(maps) and maps != (sandbox.uid_map, sandbox.gid_map):
                raise InvalidArgument("CreateContainer: userns_options maps differ from the pod's",
                                      hint="a pod's containers share its user namespace")
        elif userns.mode == api_pb2.NODE:
            if sandbox.userns is not None:
                raise InvalidArgument("CreateContainer: userns_options mode NODE in a pod with a user namespace")
        else:
            raise Unimplemented(f"CreateContainer: user namespace mode {api_pb2.NamespaceMode.Name(userns.mode)} "
                                "is not supported: a container shares its pod's")
    if sandbox.userns is None:
        return None
    return UserNamespace(path=sandbox.userns, uid_map=sandbox.uid_map, gid_map=sandbox.gid_map)


# --- mounts and devices -------------------------------------------------------------


def mount_json(m: api_pb2.Mount) -> dict[str, Any]:
    data: dict[str, Any] = {
        "container_path": m.container_path, "host_path": m.host_path, "readonly": m.readonly,
        "selinux_relabel": m.selinux_relabel, "propagation": int(m.propagation),
        "recursive_read_only": m.recursive_read_only}
    if m.image.image:
        data.update(image=m.image.image, image_sub_path=m.image_sub_path)
    return data


def mount_from_json(data: Mapping[str, Any]) -> api_pb2.Mount:
    return api_pb2.Mount(container_path=str(data.get("container_path", "")),
                         host_path=str(data.get("host_path", "")), readonly=bool(data.get("readonly")),
                         selinux_relabel=bool(data.get("selinux_relabel")),
                         propagation=int(data.get("propagation", 0)),  # type: ignore[arg-type]
                         recursive_read_only=bool(data.get("recursive_read_only")),
                         image=api_pb2.ImageSpec(image=str(data["image"])) if data.get("image") else None,
                         image_sub_path=str(data.get("image_sub_path", "")))


def _mounts(mounts: Any, files: HostFiles) -> tuple[list[BindMount], list[str], list[ImageVolume]]:
    out: list[BindMount] = []
    create: list[str] = []
    volumes: list[ImageVolume] = []
    for m in mounts:
        if not m.container_path.startswith("/"):
            raise InvalidArgument(f"invalid mount {m.container_path!r}: the container path must be absolute")
        if m.HasField("image") and m.image.image:
            volumes.append(_image_volume(m))
            continue
        if not m.host_path.startswith("/"):
            raise InvalidArgument(f"invalid mount {m.host_path!r} at {m.container_path}: "
                                  "the host path must be absolute")
        propagation = _PROPAGATION.get(m.propagation)
        if propagation is None:
            raise InvalidArgument(f"unknown mount propagation {m.propagation} for {m.container_path}")
        if m.recursive_read_only and not m.readonly:
            # api.proto: "when set to true, readonly must be explicitly set to true, and propagation must be PRIVATE".
            raise InvalidArgument(f"mount {m.container_path}: recursive_read_only needs readonly set too")
        if m.recursive_read_only and m.propagation != api_pb2.PROPAGATION_PRIVATE:
            raise InvalidArgument(f"mount {m.container_path}: recursive_read_only needs propagation "
                                  f"PROPAGATION_PRIVATE, not {api_pb2.MountPropagation.Name(m.propagation)}")
        source = posixpath.normpath(m.host_path)
        if not files.exists(source):
            create.append(source)
        if propagation != "rprivate":
            _check_propagation(files, source, propagation)
        out.append(BindMount(source=source, destination=posixpath.normpath(m.container_path),
                             readonly=m.readonly, propagation=propagation,
                             recursive_read_only=m.recursive_read_only))
    return out, create, volumes


def _image_volume(m: api_pb2.Mount) -> ImageVolume:
    """An image volume, as containerd's CRI plugin takes one: "hostpath must
    be empty" and "readonly must be true while mount image".  Propagation
    and recursive read-only mean nothing for a read-only view with no
    submounts: it is bound rprivate and read-only."""
    destination = posixpath.normpath(m.container_path)
    if m.host_path:
        raise InvalidArgument(f"image volume at {destination}: host_path must be empty (it mounts image "
                              f"{m.image.image!r})")
    if not m.readonly:
        raise InvalidArgument(f"image volume at {destination}: an image volume is read-only",
                              hint="set readonly on the mount")
    return ImageVolume(image=m.image.image, destination=destination, sub_path=m.image_sub_path)


def _check_propagation(files: HostFiles, source: str, propagation: str) -> None:
    """containerd's rule: propagation needs it on the host side too, else the
    mount would silently not propagate.  BIDIRECTIONAL needs a shared host
    mount; HOST_TO_CONTAINER a shared or slave one."""
    kind = files.propagation(source)
    if propagation == "rshared" and kind != "shared":
        raise FailedPrecondition(f"mount {source} asks for bidirectional propagation, but the host mount it is "
                                 f"on is {kind}", hint="make it shared: mount --make-rshared")
    if propagation == "rslave" and kind == "private":
        raise FailedPrecondition(f"mount {source} asks for host-to-container propagation, but the host mount "
                                 "it is on is private", hint="make it shared: mount --make-rshared")


def _pod_mounts(sandbox: Sandbox, taken: set[str], *, readonly: bool) -> list[BindMount]:
    """The pod's files, unless the request mounts something there itself."""
    wanted: list[tuple[str, str | None, bool]] = [
        ("/etc/resolv.conf", sandbox.resolv_conf, readonly),
        ("/etc/hostname", sandbox.hostname_file, readonly),
        # With the host's IPC namespace, the host's /dev/shm (as containerd does).
        ("/dev/shm", sandbox.shm if sandbox.ipc is not None or sandbox.shm else "/dev/shm", False),
    ]
    return [BindMount(source=source, destination=dest, readonly=ro, propagation="rprivate")
            for dest, source, ro in wanted if source and dest not in taken]


def _devices(devices: Any, files: HostFiles) -> tuple[Device, ...]:
    out: list[Device] = []
    for d in devices:
        if not d.container_path.startswith("/"):
            raise InvalidArgument(f"invalid device {d.container_path!r}: the container path must be absolute")
        if not d.host_path.startswith("/"):
            raise InvalidArgument(f"invalid device {d.host_path!r}: the host path must be absolute")
        out += files.devices(d.host_path, posixpath.normpath(d.container_path), d.permissions or "rwm")
    return tuple(out)


def _config_json(config: api_pb2.ContainerConfig) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    data: dict[str, Any] = MessageToDict(config, preserving_proto_field_name=True)
    return data
