"""STATUS (spec 1.1): whether a network's plugins can take ADD requests now.

The runtime runs every plugin of the network in order with
``CNI_COMMAND=STATUS`` (only ``CNI_COMMAND`` and ``CNI_PATH`` set; on stdin
the plugin's config with the network's ``name`` and ``cniVersion``, no
``prevResult``) and stops at the first failure, as libcni does.  A plugin
that cannot serve ADD answers with an error, e.g. code 50 ("the plugin is not
available") or 51 ("... existing containers may have limited connectivity").

kubelet asks the CRI's Status every few seconds, so an answer is reused for
``ttl`` seconds; callers asking at once wait for the one probe running and
share its answer.  Probing blocks (it runs the plugins in the calling
thread): call it from a worker thread, as the CRI's Status does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from hawser._dataclass import dataclass
from hawser.network._config import NetworkConfig
from hawser.network._errors import PluginFailure, parse_failure
from hawser.network._exec import build_env, build_stdin, find_plugin, run_plugin_blocking

log = logging.getLogger("hawser.network")

# How long a STATUS answer is reused: kubelet polls Status every 5 seconds or so.
STATUS_TTL = 1.5
# A plugin's STATUS answer must be quick: a caller (kubelet's Status) waits for it.
STATUS_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class _Answer:
    key: tuple[str, str]  # (network config, bin dirs) it is the answer for
    at: float
    failure: PluginFailure | None


class StatusProbe:
    """STATUS of a network's plugins, remembered for ``ttl`` seconds.  Safe to
    use from several threads."""

    def __init__(self, bin_dirs: Sequence[str], *, env: Mapping[str, str] | None = None,
                 timeout: float = STATUS_TIMEOUT, ttl: float = STATUS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bin_dirs = tuple(bin_dirs)
        self.timeout = timeout
        self.ttl = ttl
        self._env = env
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: _Answer | None = None

    def failure(self, net: NetworkConfig) -> PluginFailure | None:
        """The first plugin's STATUS failure, or None when every plugin is
        ready.  Runs the plugins unless a fresh answer for this very config is
        at hand.  Blocking; never raises (a plugin that cannot be run or does
        not answer in time is a failure too)."""
        key = (net.raw, ":".join(self.bin_dirs))
        with self._lock:
            answer = self._answer
            if answer is not None and answer.key == key and self._clock() - answer.at < self.ttl:
                return answer.failure
            failure = self._probe(net)
            self._answer = _Answer(key=key, at=self._clock(), failure=failure)
        before = answer.failure.describe() if answer is not None and answer.failure is not None else None
        if before != (failure.describe() if failure is not None else None):
            if failure is not None:
                log.warning("CNI network %r is not ready: %s", net.name, failure.describe())
            elif answer is not None and answer.failure is not None:
                log.info("CNI network %r is ready again", net.name)
        return failure

    def _probe(self, net: NetworkConfig) -> PluginFailure | None:
        env = build_env("STATUS", None, self.bin_dirs, self._env)
        for plugin in net.plugins:
            path = find_plugin(plugin.type, self.bin_dirs)
            if path is None:
                return PluginFailure(plugin=plugin.type, command="STATUS", network=net.name,
                                     msg=f"plugin not found in {':'.join(self.bin_dirs)}")
            stdin = build_stdin(name=net.name, cni_version=net.cni_version, plugin_raw=plugin.raw,
                                capabilities=plugin.capabilities, capability_args={}, prev_result=None)
            try:
                res = run_plugin_blocking(path, env=env, stdin=stdin, timeout=self.timeout)
            except OSError as exc:
                return PluginFailure(plugin=plugin.type, command="STATUS", network=net.name,
                                     msg=f"cannot run {path}: {exc.strerror or exc}")
            if res.timed_out:
                return PluginFailure(plugin=plugin.type, command="STATUS", network=net.name,
                                     msg=f"no answer within {self.timeout:g}s: killed", timed_out=True)
            if res.returncode != 0:
                return parse_failure(plugin=plugin.type, command="STATUS", network=net.name,
                                     exit_status=res.returncode, stdout=res.stdout, stderr=res.stderr)
        return None
