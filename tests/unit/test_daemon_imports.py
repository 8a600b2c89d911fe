"""What hawserd's start imports: every service module (their servicers are
registered at start), and none of what only a rare request or the metrics
endpoint needs; each costs the idle daemon memory (bench/ctr.py's idle RSS)."""

from __future__ import annotations

import subprocess
import sys

# The modules hawserd imports to build and serve both APIs (Daemon.build, _serve).
SERVICES = ("hawser.daemon._daemon", "hawser.cri.services", "hawser.cri._stream_runtime", "hawser.containerd._server",
            "hawser.containerd.managers", "hawser.events", "hawser.images", "hawser.network", "hawser.pods",
            "hawser.runtime", "hawser.store")
# Loaded by the request that needs them, never at start.
RARE = {
    "google.protobuf.descriptor_pb2",  # gogoproto's options, which the stubs no longer name
    "google.protobuf.json_format",  # RunPodSandbox and CreateContainer keep the config as JSON
    "uuid",  # containerd's Introspection.Server
    "hawser.cri.streaming._spdy", "hawser.cri.streaming._websocket",  # an exec, attach or port-forward session
    "hawser.cri.streaming._remotecommand", "hawser.cri.streaming._portforward",
    "prometheus_client",  # the metrics endpoint, when it is on (Daemon.build imports hawser.metrics then)
}


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    code += "\nimport sys; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    return set(eval(out.strip().splitlines()[-1]))  # a list literal printed by the child


def test_the_service_modules_import_nothing_rare() -> None:
    loaded = modules_after("\n".join(f"import {name}" for name in SERVICES))
    assert set(SERVICES) <= loaded
    assert not loaded & RARE


def test_counting_a_start_imports_no_prometheus() -> None:
    # hawserd counts its starts with the metrics endpoint off too.
    loaded = modules_after("from hawser.metrics import record_start")
    assert "hawser.metrics._starts" in loaded and "prometheus_client" not in loaded
