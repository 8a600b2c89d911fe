"""The CRI streaming server: exec, attach and port-forward sessions over the
protocols kubelets and kubectl speak (SPDY/3.1 with the v2-v4
remote-command and portforward.k8s.io protocols; WebSocket with
v4/v5.channel.k8s.io).

The CRI daemon implements ``StreamingRuntime``, starts one
``StreamingServer`` and answers Exec/Attach/PortForward with the URLs from
``exec_url`` / ``attach_url`` / ``port_forward_url``.
"""

from hawser.cri.streaming._server import StreamingServer
from hawser.cri.streaming._types import (
    AsyncReader,
    AsyncWriter,
    AttachRequest,
    DuplexStream,
    ExecRequest,
    PortForwardRequest,
    StreamingRuntime,
    TerminalSize,
)

__all__ = [
    "AsyncReader",
    "AsyncWriter",
    "AttachRequest",
    "DuplexStream",
    "ExecRequest",
    "PortForwardRequest",
    "StreamingRuntime",
    "StreamingServer",
    "TerminalSize",
]
