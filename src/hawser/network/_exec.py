"""Executing one CNI plugin (spec section 2, "Execution Protocol").

Parameters go in ``CNI_*`` environment variables, the derived execution
config on stdin (section 3, "Deriving execution configuration"), the result
or error object comes back on stdout.  Every execution has a timeout; on a
timeout or a cancellation the plugin's whole process group (it may have
delegated to an IPAM plugin) gets SIGTERM, then SIGKILL, and is always reaped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from hawser._dataclass import dataclass
from hawser.host import ProcessTimedOut, run_process, run_process_async, uncancellable

# After SIGTERM, how long a plugin's process group gets before SIGKILL.
TERM_GRACE = 1.0

# Await cleanup to its end despite a cancellation (network's callers know it by this name).
finish = uncancellable


@dataclass(frozen=True, slots=True)
class Attachment:
    """The per-pod parameters of every plugin execution for one network
    attachment (spec section 3, "Attachment Parameters")."""

    container_id: str
    netns: str  # "" once the namespace is gone (allowed for DEL)
    ifname: str
    cni_args: tuple[tuple[str, str], ...] = ()
    # the runtime's capability arguments, a JSON object ({"portMappings": [...], ...})
    capability_args: str = "{}"


def cni_args_string(args: Sequence[tuple[str, str]]) -> str:
    return ";".join(f"{key}={value}" for key, value in args)


def build_env(command: str, attachment: Attachment | None, bin_dirs: Sequence[str],
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The plugin's environment: the caller's (plugins run iptables, found on
    PATH) without stray ``CNI_*`` variables, plus the protocol's parameters."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = command
    env["CNI_PATH"] = os.pathsep.join(bin_dirs)
    if attachment is not None:
        env["CNI_CONTAINERID"] = attachment.container_id
        env["CNI_NETNS"] = attachment.netns
        env["CNI_IFNAME"] = attachment.ifname
        env["CNI_ARGS"] = cni_args_string(attachment.cni_args)
    return env


def build_stdin(*, name: str, cni_version: str, plugin_raw: str, capabilities: frozenset[str],
                capability_args: Mapping[str, Any], prev_result: str | None,
                inject: Mapping[str, Any] | None = None) -> bytes:
    """The execution config: the plugin's config with the network's ``name``
    and ``cniVersion``, ``runtimeConfig`` holding the capability arguments the
    plugin declared (and only those), ``prevResult`` when given, and no
    ``capabilities`` key (the spec says the runtime removes it).  ``inject``
    adds keys of the runtime's own (GC's ``cni.dev/valid-attachments``)."""
    conf: dict[str, Any] = json.loads(plugin_raw)
    conf["name"] = name
    conf["cniVersion"] = cni_version
    conf.pop("cniVersions", None)
    conf.pop("capabilities", None)
    runtime = {key: value for key, value in capability_args.items() if key in capabilities}
    if runtime:
        existing = conf.get("runtimeConfig")
        conf["runtimeConfig"] = {**existing, **runtime} if isinstance(existing, dict) else runtime
    if prev_result is not None:
        conf["prevResult"] = json.loads(prev_result)
    if inject:
        conf.update(inject)
    return json.dumps(conf, separators=(",", ":")).encode()


def find_plugin(kind: str, bin_dirs: Sequence[str]) -> str | None:
    """The first executable named ``kind`` in ``bin_dirs``, or None."""
    for directory in bin_dirs:
        path = os.path.join(directory, kind)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


@dataclass(frozen=True, slots=True)
class ExecResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


async def run_plugin(path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float) -> ExecResult:
    """Run a plugin to completion within ``timeout`` seconds.  A timeout is
    reported in the result (``timed_out``), not raised; OSError if it cannot
    be started; a cancellation kills and reaps it, then propagates."""
    try:
        res = await run_process_async([path], input=stdin, env=env, timeout=timeout, kill_group=True,
                                      grace=TERM_GRACE)
    except ProcessTimedOut as exc:
        return ExecResult(returncode=exc.returncode, stdout=b"", stderr=f"killed after {timeout:g}s".encode(),
                          timed_out=True)
    return ExecResult(returncode=res.returncode, stdout=res.stdout, stderr=res.stderr)


def run_plugin_blocking(path: str, *, env: Mapping[str, str], stdin: bytes, timeout: float) -> ExecResult:
    """``run_plugin`` in the calling thread, for callers that run in a worker
    thread already (STATUS, asked by the CRI's Status through one).  The
    plugin's process group is killed and reaped on a timeout or an interruption."""
    try:
        res = run_process([path], input=stdin, env=env, timeout=timeout, kill_group=True, grace=TERM_GRACE)
    except ProcessTimedOut as exc:
        return ExecResult(returncode=exc.returncode, stdout=b"", stderr=f"killed after {timeout:g}s".encode(),
                          timed_out=True)
    return ExecResult(returncode=res.returncode, stdout=res.stdout, stderr=res.stderr)
