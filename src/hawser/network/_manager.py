"""CNINetwork: attach pods to the node's CNI network (spec section 3,
"Execution of Network Configurations").

ADD runs the chain in order, each plugin getting the previous one's result as
``prevResult``; a failure (or a cancellation) part-way runs DEL over the whole
chain before the error is raised, because the spec wants every ADD followed
by a DEL and half a chain leaves veths, IPs and iptables rules behind.  DEL
runs the chain in reverse and, unlike the spec's "halt on the first error",
keeps going past a failing plugin so one broken plugin does not leak what the
others hold; the failures are reported together afterwards and the cache
entry is kept, so the next teardown tries again.

A pod whose netns is already gone is DELeted in a stand-in namespace holding
its recorded addresses (see ``_standin``), falling back to the spec's empty
CNI_NETNS.

Operations on one pod are serialized (the spec forbids parallel operations on
one container); different pods run concurrently.

Spec 1.1's STATUS (``status``, through ``_status.StatusProbe``) and GC
(``gc``, see ``_gc``) run only for network configs of 1.1.0 or later: plugins
of older configs may not know those commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from hawser._dataclass import dataclass, field, replace
from hawser._failpoints import failpoint
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.host import is_netns
from hawser.network._cache import CacheEntry, ResultCache
from hawser.network._config import ConfigDir, ConfigSnapshot, NetworkConfig, PluginConfig, parse_network_config
from hawser.network._errors import (
    CNIDeadlineExceeded,
    CNIError,
    CNIFailedPrecondition,
    PluginFailure,
    cni_error,
    parse_failure,
)
from hawser.network._exec import Attachment, build_env, build_stdin, find_plugin, finish, run_plugin
from hawser.network._gc import VALID_ATTACHMENTS, GCReport, StartupGC
from hawser.network._result import Result, parse_result, result_from_json
from hawser.network._standin import make_standin, remove_standin
from hawser.network._status import STATUS_TIMEOUT, StatusProbe
from hawser.network._types import NetworkStatus, PodNetwork, PodNetworkRequest

log = logging.getLogger("hawser.network")

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIRS = ("/usr/lib/cni",)
DEFAULT_CACHE_DIR = "/var/lib/hawser/cni/results"

NOT_READY = "NetworkPluginNotReady"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass
class _KeyedLocks:
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _users: dict[str, int] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


def _validate_pod_id(pod_id: str) -> None:
    # also a file name in the cache: the spec's container id alphabet keeps it one
    if not _ID.match(pod_id):
        raise InvalidArgument(f"pod id {pod_id!r} is not a valid CNI container id "
                              "(letters, digits, '_', '.', '-', starting with a letter or digit)")


def _validate(request: PodNetworkRequest) -> None:
    _validate_pod_id(request.pod_id)
    ifname = request.ifname
    if (not ifname or len(ifname) > 15 or ifname in (".", "..")
            or any(c in ifname for c in "/:") or any(c.isspace() for c in ifname)):
        raise InvalidArgument(f"interface name {ifname!r} is not a valid Linux interface name")
    if not request.netns.startswith("/"):
        raise InvalidArgument(f"network namespace path {request.netns!r} is not absolute")
    for key, value in (("name", request.name), ("namespace", request.namespace), ("uid", request.uid)):
        if any(c in value for c in ";=\0"):
            raise InvalidArgument(f"pod {key} {value!r} cannot be passed in CNI_ARGS (';' and '=' are separators)")
    for m in request.port_mappings:
        if not 1 <= m.container_port <= 65535 or not 0 <= m.host_port <= 65535:
            raise InvalidArgument(f"port mapping {m.host_port}->{m.container_port}: ports must be in 1-65535")
        if m.protocol.lower() not in _PROTOCOLS:
            raise InvalidArgument(f"port mapping protocol {m.protocol!r} is not one of {', '.join(_PROTOCOLS)}")
        if m.host_ip:
            try:
                ipaddress.ip_address(m.host_ip)
            except ValueError:
                raise InvalidArgument(f"port mapping host IP {m.host_ip!r} is not an IP address") from None


def _cni_args(request: PodNetworkRequest) -> tuple[tuple[str, str], ...]:
    args = [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", request.namespace), ("K8S_POD_NAME", request.name),
            ("K8S_POD_INFRA_CONTAINER_ID", request.pod_id)]
    if request.uid:
        args.append(("K8S_POD_UID", request.uid))
    return tuple(args)


def _capability_args(request: PodNetworkRequest) -> dict[str, Any]:
    """The runtimeConfig values hawser offers (CNI CONVENTIONS.md); each plugin
    receives only those it declares in its ``capabilities``."""
    caps: dict[str, Any] = {}
    # hostPort 0 means "no host port" in Kubernetes: nothing to map
    mappings = [{"hostPort": m.host_port, "containerPort": m.container_port, "protocol": m.protocol.lower(),
                 **({"hostIP": m.host_ip} if m.host_ip else {})}
                for m in request.port_mappings if m.host_port]
    if mappings:
        caps["portMappings"] = mappings
    if request.dns is not None:
        caps["dns"] = {"servers": list(request.dns.servers), "searches": list(request.dns.searches),
                       "options": list(request.dns.options)}
    if request.annotations:
        caps["io.kubernetes.cri.pod-annotations"] = dict(request.annotations)
    if request.cgroup_parent:
        caps["cgroupPath"] = request.cgroup_parent
    return caps


class CNINetwork:
    """Pods on the node's CNI network: the first valid config in ``conf_dir``,
    plugins from ``bin_dirs``, each attachment recorded under ``cache_dir``
    (keep it on persistent storage: IPAM state outlives reboots too).

    Constructing it touches nothing; every call re-reads the config dir if it
    changed.  ``plugin_timeout`` bounds each plugin execution.
    """

    def __init__(self, conf_dir: str = DEFAULT_CONF_DIR, bin_dirs: Sequence[str] = DEFAULT_BIN_DIRS,
                 cache_dir: str = DEFAULT_CACHE_DIR, *, plugin_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.conf_dir = conf_dir
        self.bin_dirs = tuple(bin_dirs)
        self.plugin_timeout = plugin_timeout
        self._env = env
        self._configs = ConfigDir(conf_dir)
        self._cache = ResultCache(cache_dir)
        self._locks = _KeyedLocks()
        self._status = StatusProbe(self.bin_dirs, env=env, timeout=min(plugin_timeout, STATUS_TIMEOUT))

    # -- status ----------------------------------------------------------------

    def config(self) -> ConfigSnapshot:
        """The config dir as of now: the network in use and skipped files."""
        return self._configs.snapshot()

    def status(self) -> NetworkStatus:
        """Ready when a valid network config exists, its plugins (and IPAM
        plugins) are installed and, for a config of spec 1.1.0 or later, every
        plugin answers STATUS without an error (the first error, with its code
        and message, is the condition's message).  Older configs get no
        STATUS: their plugins may not know it.

        Blocking for a 1.1.0 config (it may run the plugins; an answer is
        reused for ``STATUS_TTL`` seconds): call it from a worker thread.
        Never raises."""
        snap = self._configs.snapshot()
        net = snap.network
        if net is None:
            why = snap.error or "no valid network config found"
            skipped = "".join(f"; skipped {name}: {reason}" for name, reason in snap.skipped)
            return NetworkStatus(False, NOT_READY, f"cni config uninitialized: {why} in {self.conf_dir}{skipped}")
        missing = self._missing_plugins(net)
        if missing:
            return NetworkStatus(False, NOT_READY, f"network {net.name!r} ({net.source}) needs CNI plugins "
                                                   f"{', '.join(missing)}, not found in {':'.join(self.bin_dirs)}")
        if net.supports_status_and_gc:
            failure = self._status.failure(net)
            if failure is not None:
                return NetworkStatus(False, NOT_READY, f"network {net.name!r} ({net.source}) is not ready: "
                                                       f"{failure.describe()}")
        return NetworkStatus(True)

    def _missing_plugins(self, net: NetworkConfig) -> list[str]:
        return sorted({kind for p in net.plugins for kind in (p.type, p.ipam_type)
                       if kind and find_plugin(kind, self.bin_dirs) is None})

    # -- attach ----------------------------------------------------------------

    async def setup(self, request: PodNetworkRequest) -> PodNetwork:
        """ADD the pod to the network and return its attachment.

        Idempotent: a pod already attached with the same netns, network and
        interface gets its recorded attachment back; a stale or half-done one
        is deleted first.  On any failure, and on cancellation, the chain is
        DELeted before the error propagates.  Raises InvalidArgument (bad
        request), FailedPrecondition (no usable config, plugin missing, invalid
        result), CNIError kinds from the plugins (Unavailable...),
        DeadlineExceeded (a plugin timed out), OSError (cache not writable).
        """
        _validate(request)
        net = self._configs.snapshot().network
        if net is None:
            raise FailedPrecondition(f"no CNI network config in {self.conf_dir}: cannot attach pod {request.pod_id}",
                                     hint="put a network .conflist there (hawser's default: hawser.network.write_default_conflist)")
        missing = self._missing_plugins(net)
        if missing:
            # fail before anything ran: a chain missing a plugin could not be undone either
            failures = [PluginFailure(plugin=kind, command="ADD", network=net.name,
                                      msg=f"plugin not found in {':'.join(self.bin_dirs)}") for kind in missing]
            raise CNIFailedPrecondition(
                f"cannot attach pod {request.pod_id} to network {net.name!r}: "
                + "; ".join(f.describe() for f in failures), failures,
                hint="install containernetworking-plugins or fix the config's \"type\"")
        caps = _capability_args(request)
        attachment = Attachment(container_id=request.pod_id, netns=request.netns, ifname=request.ifname,
                                cni_args=_cni_args(request),
                                capability_args=json.dumps(caps, separators=(",", ":"), sort_keys=True))
        async with self._locks.hold(request.pod_id):
            for old in await asyncio.to_thread(self._cache.entries, request.pod_id):
                if old.network != net.name and old.ifname != request.ifname:
                    continue  # another attachment of the same container (the CLI's `network connect`)
                if (old.result is not None and old.netns == request.netns and old.network == net.name
                        and old.ifname == request.ifname):
                    return self._pod_network(old, result_from_json(json.loads(old.result), source="the CNI cache"))
                # the spec allows no second ADD without a DEL
                failures = await self._delete(old, None)
                if failures:
                    raise cni_error(f"cannot attach pod {request.pod_id}: detaching its previous attachment "
                                    f"to network {old.network!r} failed", failures)
            entry = CacheEntry(pod_id=request.pod_id, network=net.name, ifname=request.ifname, netns=request.netns,
                               config=net.raw, cni_args=attachment.cni_args,
                               capability_args=attachment.capability_args)
            # recorded before the first ADD: a crash part-way still leaves what DEL needs
            await asyncio.to_thread(self._cache.write, entry)
            prev: str | None = None
            try:
                result: Result | None = None
                for plugin in net.plugins:
                    out = await self._exec(net, plugin, "ADD", attachment, caps, prev)
                    result = parse_result(out, source=f"CNI plugin {plugin.type} (network {net.name!r})")
                    prev = result.raw
                    failpoint("cni.add.after-plugin")
                assert result is not None  # a network has at least one plugin
                entry = replace(entry, result=result.raw)
                await asyncio.to_thread(self._cache.write, entry)
                failpoint("cni.add.after-result")
            except BaseException as exc:
                await finish(self._rollback(net, entry, attachment, caps, prev, exc))
                raise
            log.debug("pod %s attached to network %r: %s", request.pod_id, net.name,
                      ", ".join(ip.ip for ip in result.sandbox_ips(request.ifname)))
            return self._pod_network(entry, result)

    async def _rollback(self, net: NetworkConfig, entry: CacheEntry, attachment: Attachment, caps: dict[str, Any],
                        prev: str | None, exc: BaseException) -> None:
        failures = await self._del_chain(net, attachment, caps, prev)
        if failures:
            text = "; ".join(f.describe() for f in failures)
            log.warning("pod %s: undoing a failed CNI ADD failed too (kept for the next teardown): %s",
                        entry.pod_id, text)
            exc.add_note(f"undoing the ADD failed too: {text}")
            return
        await asyncio.to_thread(self._cache.delete, entry)

    @staticmethod
    def _pod_network(entry: CacheEntry, result: Result) -> PodNetwork:
        return PodNetwork(pod_id=entry.pod_id, network=entry.network, ifname=entry.ifname, netns=entry.netns,
                          result=result)

    async def pod_network(self, pod_id: str) -> PodNetwork | None:
        """The pod's recorded attachment (what ``setup`` returned), or None
        when it is not attached: how a restarted daemon learns pod IPs without
        running any plugin.  Raises InvalidArgument for a bad pod id."""
        _validate_pod_id(pod_id)
        for entry in await asyncio.to_thread(self._cache.entries, pod_id):
            if entry.result is not None:
                return self._pod_network(entry, result_from_json(json.loads(entry.result), source="the CNI cache"))
        return None

    # -- detach ----------------------------------------------------------------

    async def teardown(self, pod_id: str, netns: str | None = None, *, network: str | None = None) -> None:
        """DEL every attachment recorded for the pod, with the config it was
        added with (the config dir may have changed or be empty since).
        ``netns`` overrides the recorded path; a namespace that is gone is
        passed as an empty CNI_NETNS, which the spec allows for DEL.

        Idempotent: a pod with no recorded attachment (never attached, or
        already detached) succeeds at once.  Raises InvalidArgument for a bad
        pod id, and the CNIError of the first failing plugin (after running
        the rest of the chain) when a DEL failed; the record is then kept so a
        later teardown retries.  ``network``: only the attachment to that
        network (the CLI's ``network disconnect``).
        """
        _validate_pod_id(pod_id)
        async with self._locks.hold(pod_id):
            failures: list[PluginFailure] = []
            for entry in await asyncio.to_thread(self._cache.entries, pod_id):
                if network is None or entry.network == network:
                    failures += await self._delete(entry, netns)
            if failures:
                raise cni_error(f"detaching pod {pod_id} from its CNI network failed", failures)

    async def _delete(self, entry: CacheEntry, netns: str | None) -> list[PluginFailure]:
        net = parse_network_config(entry.config, source=f"cached config of pod {entry.pod_id}")
        path = entry.netns if netns is None else netns
        standin_dir = ""
        if path and not await asyncio.to_thread(is_netns, path):
            # gone: DEL in a stand-in holding the pod's addresses, else with no netns at all
            path = ""
            addresses = self._sandbox_addresses(entry)
            if addresses:
                standin_dir = os.path.join(self._cache.directory, f".standin-{entry.pod_id}-{entry.ifname}")
                standin = await asyncio.to_thread(make_standin, standin_dir, entry.ifname, addresses)
                path = standin or ""
        try:
            attachment = Attachment(container_id=entry.pod_id, netns=path, ifname=entry.ifname,
                                    cni_args=entry.cni_args, capability_args=entry.capability_args)
            failures = await self._del_chain(net, attachment, json.loads(entry.capability_args), entry.result)
        finally:
            if standin_dir:
                await finish(asyncio.to_thread(remove_standin, standin_dir))
        if not failures:
            await asyncio.to_thread(self._cache.delete, entry)
        return failures

    @staticmethod
    def _sandbox_addresses(entry: CacheEntry) -> list[str]:
        if entry.result is None:
            return []
        try:
            result = result_from_json(json.loads(entry.result), source="the CNI cache")
        except (ValueError, FailedPrecondition):
            return []
        return [str(ip.address) for ip in result.sandbox_ips(entry.ifname)]

    async def _del_chain(self, net: NetworkConfig, attachment: Attachment, caps: Mapping[str, Any],
                         prev: str | None) -> list[PluginFailure]:
        # prevResult on DEL arrived with spec 0.4.0; older plugins do not expect it
        prev = prev if net.supports_check else None
        failures: list[PluginFailure] = []
        for plugin in reversed(net.plugins):
            try:
                await self._exec(net, plugin, "DEL", attachment, caps, prev)
            except CNIError as exc:
                failures.extend(exc.failures)
            else:
                failpoint("cni.del.after-plugin")
        return failures

    # -- check -----------------------------------------------------------------

    async def check(self, pod_id: str, netns: str | None = None) -> None:
        """CHECK the pod's attachments with their recorded results (skipped
        for networks with ``disableCheck`` or a spec version before 0.4.0).
        Raises NotFound if the pod is not attached, the CNIError of the first
        failing plugin otherwise.  Read-only: safe to repeat."""
        _validate_pod_id(pod_id)
        async with self._locks.hold(pod_id):
            entries = [e for e in await asyncio.to_thread(self._cache.entries, pod_id) if e.result is not None]
            if not entries:
                raise NotFound(f"pod {pod_id} is not attached to a CNI network")
            for entry in entries:
                net = parse_network_config(entry.config, source=f"cached config of pod {entry.pod_id}")
                if net.disable_check or not net.supports_check:
                    continue
                attachment = Attachment(container_id=pod_id, netns=entry.netns if netns is None else netns,
                                        ifname=entry.ifname, cni_args=entry.cni_args,
                                        capability_args=entry.capability_args)
                caps = json.loads(entry.capability_args)
                for plugin in net.plugins:
                    await self._exec(net, plugin, "CHECK", attachment, caps, entry.result)

    # -- garbage collection ------------------------------------------------------

    def recoverer(self, live_pods: Callable[[], Iterable[str]]) -> StartupGC:
        """hawserd's start-up Recoverer: ``gc`` with the pods ``live_pods``
        (blocking) lists.  See ``hawser.network._gc``."""
        return StartupGC(self, live_pods)

    async def gc(self, live_pods: Collection[str]) -> GCReport:
        """Garbage-collect the network state of pods not in ``live_pods`` (the
        ids of every pod that exists): DEL their recorded attachments with the
        config they were added with, then, for a network config of spec 1.1.0
        or later without ``disableGC``, run each plugin of the network in use
        with GC and the attachments of the live pods recorded on it.  A network
        whose config says ``disableGC`` is left alone altogether (libcni).

        Call it while no pod is being attached (hawserd: at start-up, before
        serving): a pod attached meanwhile would be missing from the valid
        attachments.  Plugin failures do not stop the rest; they are logged
        and reported, never raised.  OSError if the cache dir cannot be read."""
        entries = await asyncio.to_thread(self._cache.all_entries)
        deleted: list[str] = []
        failures: list[PluginFailure] = []
        for entry in entries:
            if entry.pod_id in live_pods:
                continue
            try:
                added_with = parse_network_config(entry.config, source=f"cached config of pod {entry.pod_id}")
            except InvalidArgument as exc:
                log.warning("CNI GC: cannot DEL the stale attachment of pod %s: %s", entry.pod_id, exc)
                continue
            if added_with.disable_gc:
                continue
            async with self._locks.hold(entry.pod_id):
                failed = await self._delete(entry, None)
            name = f"{entry.pod_id}:{entry.network}:{entry.ifname}"
            if failed:
                log.warning("CNI GC: DEL of the stale attachment %s failed (kept for the next start): %s", name,
                            "; ".join(f.describe() for f in failed))
                failures += failed
            else:
                log.info("CNI GC: DELeted the stale attachment %s (its pod is gone)", name)
                deleted.append(name)
        net = self._configs.snapshot().network
        if net is None or not net.supports_status_and_gc or net.disable_gc:
            return GCReport(deleted=tuple(deleted), failures=tuple(failures))
        valid = tuple(sorted({(e.pod_id, e.ifname) for e in entries
                              if e.pod_id in live_pods and e.network == net.name}))
        inject = {VALID_ATTACHMENTS: [{"containerID": pod_id, "ifname": ifname} for pod_id, ifname in valid]}
        for plugin in net.plugins:
            try:
                await self._exec(net, plugin, "GC", None, {}, None, inject=inject)
            except CNIError as exc:
                failures.extend(exc.failures)
                log.warning("CNI GC of network %r: %s", net.name, exc.message)
        log.info("CNI GC of network %r with %d valid attachment(s)", net.name, len(valid))
        return GCReport(deleted=tuple(deleted), network=net.name, valid=valid, failures=tuple(failures))

    # -- one plugin ------------------------------------------------------------

    async def _exec(self, net: NetworkConfig, plugin: PluginConfig, command: str, attachment: Attachment | None,
                    caps: Mapping[str, Any], prev: str | None, *, inject: Mapping[str, Any] | None = None) -> bytes:
        what = (f"CNI {command} of pod {attachment.container_id} on network {net.name!r} failed"
                if attachment is not None else f"CNI {command} of network {net.name!r} failed")
        path = find_plugin(plugin.type, self.bin_dirs)
        if path is None:
            failure = PluginFailure(plugin=plugin.type, command=command, network=net.name,
                                    msg=f"plugin not found in {':'.join(self.bin_dirs)}")
            raise CNIFailedPrecondition(f"{what}: {failure.describe()}", [failure],
                                        hint="install containernetworking-plugins or fix the config's \"type\"")
        stdin = build_stdin(name=net.name, cni_version=net.cni_version, plugin_raw=plugin.raw,
                            capabilities=plugin.capabilities, capability_args=caps, prev_result=prev, inject=inject)
        env = build_env(command, attachment, self.bin_dirs, self._env)
        try:
            res = await run_plugin(path, env=env, stdin=stdin, timeout=self.plugin_timeout)
        except OSError as exc:
            failure = PluginFailure(plugin=plugin.type, command=command, network=net.name,
                                    msg=f"cannot run {path}: {exc.strerror or exc}")
            raise CNIFailedPrecondition(f"{what}: {failure.describe()}", [failure]) from None
        if res.timed_out:
            failure = PluginFailure(plugin=plugin.type, command=command, network=net.name,
                                    msg=f"no answer within {self.plugin_timeout:g}s: killed", timed_out=True)
            raise CNIDeadlineExceeded(f"{what}: {failure.describe()}", [failure])
        if res.returncode != 0:
            failure = parse_failure(plugin=plugin.type, command=command, network=net.name,
                                    exit_status=res.returncode, stdout=res.stdout, stderr=res.stderr)
            raise cni_error(what, [failure])
        if res.stderr:
            log.debug("CNI plugin %s %s said: %s", plugin.type, command, res.stderr.decode(errors="replace")[-2000:])
        return res.stdout
