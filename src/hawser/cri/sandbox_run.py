"""RunPodSandbox: "creates and starts a pod-level sandbox. Runtimes must ensure
the sandbox is in the ready state on success." (cri-api api.proto)

Idempotency: kubelet retries a call that timed out with the same request;
the retry gets the pod the first call made rather than a second one.  The
metadata (name, namespace, uid, attempt) is reserved while that pod lives, as
containerd reserves it: another request for it (another config, or a stopped
pod's) is ALREADY_EXISTS, "name is reserved".  On failure everything the call
made is undone.

The metadata is checked here, once, against the rule the pod's container
names must follow, so that no CreateContainer in the pod fails on it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, Unimplemented
from hawser.pods import CONTAINER, NODE, POD, TARGET, PodPort, PodSpec
from hawser.runtime import check_id_mappings

_MODES = {api_pb2.POD: POD, api_pb2.CONTAINER: CONTAINER, api_pb2.NODE: NODE, api_pb2.TARGET: TARGET}
_PROTOCOLS = {api_pb2.TCP: "tcp", api_pb2.UDP: "udp", api_pb2.SCTP: "sctp"}

# Each container of the pod is named <container>_<name>_<namespace>_<uid>_<attempt>
# (``_container_options.container_name``), and the runtime takes names of ASCII
# letters, digits, '_', '.' and '-' only, at most 512 long (its NAME_RE).  "_"
# joins the parts of the pod's key (name_namespace_uid_attempt), so the name and
# namespace may not hold one: the uid, last but for a number, may.
_NAME_CHARS = re.compile(r"[a-zA-Z0-9.-]+")
_UID_CHARS = re.compile(r"[a-zA-Z0-9_.-]+")
# What name, namespace and uid may take of the 512 together: the rest is for the
# container's own name (a DNS label in Kubernetes: 63), its attempt (a uint32: 10
# digits) and the 4 separators.
_POD_NAMES_MAX = 512 - 63 - 10 - 4


async def run_pod_sandbox(deps: CriDeps, request: api_pb2.RunPodSandboxRequest) -> api_pb2.RunPodSandboxResponse:
    # The handler runs the pod's containers; resolved now ("": the default's name) and kept in
    # the pod's record, so a later default_runtime does not split a pod between two runtimes.
    runtime = deps.runtime_handler(request.runtime_handler, call="RunPodSandbox")
    spec = pod_spec(request.config, request.runtime_handler, runtime=runtime)
    sandbox_id = await deps.require_sandboxes().run(spec)
    return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)


def pod_spec(config: api_pb2.PodSandboxConfig, runtime_handler: str = "", *, runtime: str = "") -> PodSpec:
    """The request as hawser's PodSpec; InvalidArgument for what cannot be honoured.
    ``runtime``: the configured handler ``runtime_handler`` resolves to."""
    meta = config.metadata
    _check_names(meta)
    if config.log_directory and not os.path.isabs(config.log_directory):
        raise InvalidArgument(f"RunPodSandbox: log_directory {config.log_directory!r} is not absolute")
    linux = config.linux
    security = linux.security_context
    options = security.namespace_options
    network, pid, ipc = (_mode(options.network, "network"), _mode(options.pid, "pid"), _mode(options.ipc, "ipc"))
    if network not in (POD, NODE) or ipc not in (POD, NODE):
        raise InvalidArgument("RunPodSandbox: a pod's network and ipc namespaces are POD or NODE")
    if pid == TARGET:
        raise InvalidArgument("RunPodSandbox: pid namespace mode TARGET is for containers, not pods")
    uid_map, gid_map = user_namespace(options, network=network, pid=pid, ipc=ipc)
    ports = []
    for port in config.port_mappings:
        if port.host_port <= 0:
            continue  # a containerPort without hostPort needs nothing from the runtime
        if not 0 < port.container_port < 65536 or port.host_port > 65535:
            raise InvalidArgument(f"RunPodSandbox: invalid port mapping {port.host_port}:{port.container_port}")
        ports.append(PodPort(container_port=port.container_port, host_port=port.host_port,
                             protocol=_PROTOCOLS.get(port.protocol, "tcp"), host_ip=port.host_ip))
    dns = config.dns_config
    return PodSpec(
        name=meta.name, namespace=meta.namespace, uid=meta.uid, attempt=meta.attempt, hostname=config.hostname,
        log_directory=config.log_directory, dns_servers=tuple(dns.servers), dns_searches=tuple(dns.searches),
        dns_options=tuple(dns.options), has_dns=config.HasField("dns_config"), ports=tuple(ports),
        labels=dict(config.labels), annotations=dict(config.annotations), cgroup_parent=linux.cgroup_parent,
        sysctls=dict(linux.sysctls), network_mode=network, pid_mode=pid, ipc_mode=ipc,
        privileged=security.privileged, runtime_handler=runtime_handler, runtime=runtime,
        uid_map=uid_map, gid_map=gid_map or (), raw=_config_json(config),
    )


IdMap = tuple[tuple[int, int, int], ...]


def user_namespace(options: api_pb2.NamespaceOption, *, network: str, pid: str,
                   ipc: str) -> tuple[IdMap | None, IdMap | None]:
    """The pod's uid and gid maps from ``userns_options`` (mode POD), or
    (None, None) for the host's user namespace (unset, or mode NODE).
    InvalidArgument for maps the kernel would refuse, for mappings with mode
    NODE, and for a user namespace beside the host's network, IPC or pid
    namespace (as kubelet's validation, hostUsers: false excludes them);
    Unimplemented for a user namespace per container."""
    if not options.HasField("userns_options"):
        return None, None
    userns = options.userns_options
    uids = tuple((m.container_id, m.host_id, m.length) for m in userns.uids)
    gids = tuple((m.container_id, m.host_id, m.length) for m in userns.gids)
    if userns.mode == api_pb2.NODE:
        if uids or gids:
            raise InvalidArgument("RunPodSandbox: userns_options mode NODE takes no uid or gid mappings")
        return None, None
    if userns.mode != api_pb2.POD:
        raise Unimplemented(f"RunPodSandbox: user namespace mode {api_pb2.NamespaceMode.Name(userns.mode)} "
                            "is not supported: a pod's user namespace is POD (its own) or NODE (the host's)")
    if NODE in (network, pid, ipc):
        raise InvalidArgument("RunPodSandbox: a pod with its own user namespace cannot share the host's network, "
                              "IPC or pid namespace", hint="hostUsers: false excludes hostNetwork, hostIPC, hostPID")
    try:
        check_id_mappings(uids, gids)
    except ValueError as e:
        raise InvalidArgument(f"RunPodSandbox: userns_options: {e}") from None
    return uids, gids


def _config_json(config: api_pb2.PodSandboxConfig) -> dict[str, Any]:
    # json_format (and what it imports) only once a pod is run, not in every hawserd.
    from google.protobuf.json_format import MessageToDict

    data: dict[str, Any] = MessageToDict(config, preserving_proto_field_name=True)
    return data


def _mode(value: api_pb2.NamespaceMode.ValueType, what: str) -> str:
    try:
        return _MODES[value]
    except KeyError:
        raise InvalidArgument(f"RunPodSandbox: unknown {what} namespace mode {value}") from None


def _check_names(meta: api_pb2.PodSandboxMetadata) -> None:
    """InvalidArgument, naming the field, for metadata that cannot be part of
    the pod's container names."""
    for field_name, chars, allowed in (("name", _NAME_CHARS, "'.', '-'"), ("namespace", _NAME_CHARS, "'.', '-'"),
                                       ("uid", _UID_CHARS, "'_', '.', '-'")):
        value = getattr(meta, field_name)
        if not value:
            raise InvalidArgument(f"RunPodSandbox: metadata.{field_name} is empty")
        if not chars.fullmatch(value):
            raise InvalidArgument(f"RunPodSandbox: invalid metadata.{field_name} {value!r}: the pod's container "
                                  f"names are made of it, and take only ASCII letters, digits, {allowed}")
    length = len(meta.name) + len(meta.namespace) + len(meta.uid)
    if length > _POD_NAMES_MAX:
        raise InvalidArgument(f"RunPodSandbox: metadata.name, metadata.namespace and metadata.uid are {length} "
                              f"characters together; the pod's container names leave them {_POD_NAMES_MAX}")
