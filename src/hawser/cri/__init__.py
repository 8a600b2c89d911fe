"""CRI v1: the RuntimeService and ImageService that hawserd serves, one module
per method group; a protocol adapter (protobuf in, calls on the image,
container and pod services, protobuf out), and the streaming server of
Exec/Attach/PortForward."""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.cri._stream_runtime import Streaming, new_streaming
    from hawser.cri.services import add_to_server, background_loops, new_deps
    from hawser.cri.types import CriDeps

# The generated protobuf modules are heavy: loaded when hawserd wires the services.
_EXPORTS = {
    "Streaming": "_stream_runtime", "new_streaming": "_stream_runtime", "add_to_server": "services",
    "background_loops": "services", "new_deps": "services", "CriDeps": "types",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["CriDeps", "Streaming", "add_to_server", "background_loops", "new_deps", "new_streaming"]
