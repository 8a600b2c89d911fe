"""Pod sandboxes as CRI messages."""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.pods import Sandbox

_MODE = {"POD": api_pb2.POD, "CONTAINER": api_pb2.CONTAINER, "NODE": api_pb2.NODE, "TARGET": api_pb2.TARGET}


def cri_metadata(sandbox: Sandbox) -> api_pb2.PodSandboxMetadata:
    return api_pb2.PodSandboxMetadata(name=sandbox.name, namespace=sandbox.namespace, uid=sandbox.uid,
                                      attempt=sandbox.attempt)


def cri_state(sandbox: Sandbox) -> api_pb2.PodSandboxState.ValueType:
    return api_pb2.SANDBOX_READY if sandbox.ready else api_pb2.SANDBOX_NOTREADY


def namespace_options(sandbox: Sandbox) -> api_pb2.NamespaceOption:
    config = sandbox.config
    return api_pb2.NamespaceOption(network=_MODE.get(str(config.get("network_mode", "POD")), api_pb2.POD),
                                   pid=_MODE.get(str(config.get("pid_mode", "CONTAINER")), api_pb2.CONTAINER),
                                   ipc=_MODE.get(str(config.get("ipc_mode", "POD")), api_pb2.POD))
