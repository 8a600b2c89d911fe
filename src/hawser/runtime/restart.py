"""Restart policies (``--restart no|on-failure[:N]|always|unless-stopped``)
and ``--rm``, carried out without a daemon.

Why no resident supervisor: conmon already is each container's monitor. It
outlives the command that started the container, reaps it, writes its exit
file, and then runs the exit command it was given.  A CLI container with a
policy or ``--rm`` gets ``setsid -f hawser container cleanup ID`` as that
command (podman's design): ``cleanup`` reads the policy from the record and
removes the container, starts it again in its own bundle
(``ContainerManager.start``), or leaves it exited.  Nothing runs between a
container's exits, nothing has to be started by the first ``hawser`` command
or kept alive, and a crashed supervisor cannot strand every container at
once; ``setsid -f`` lets conmon go at once, so docker's backoff delay (100 ms,
doubled at each restart, back to 100 ms once the container ran 10 s) is slept
in the detached cleanup process, not in conmon.

The record's config keeps, under ``restart``: the policy and its maximum,
``auto_remove``, the restart count (docker's RestartCount), the last delay,
and ``stopped_by_user`` (set by ``stop``/``kill`` before the signal, so the
cleanup that follows the exit restarts nothing; cleared by a user's
``start``/``restart``, as docker's HasBeenManuallyStopped).  After a reboot
the bundles in the state dir are gone: ``restart_on_boot`` (``hawser system
restart-containers``, run at boot by contrib/hawser-restart.service) makes
each ``always``/``unless-stopped`` container's bundle again from the copy of
its spec kept beside its log, joins its network again (the pinned namespace
was in the state dir too), and starts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence

from hawser._dataclass import dataclass
from hawser._logging import get_logger
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.runtime._files import write_json, write_text
from hawser.runtime._types import EXITED, PAUSED, RUNNING, UNKNOWN, ContainerInfo, ContainerStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hawser.runtime._containers import ContainerManager

log = get_logger(__name__)

POLICIES = ("no", "on-failure", "always", "unless-stopped")
KEY = "restart"  # the record config's mapping of the policy and its bookkeeping

# docker's restartmanager: 100 ms doubled at each restart, back to the start
# once a run lasted 10 s; never more than a minute.
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0
RESTARTING = "restarting"  # in the bundle while a cleanup waits out the delay
SPEC_COPY = "config.json"  # beside the container's log, under the root: it survives a reboot


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    name: str = "no"
    maximum: int = 0  # on-failure's N (0: no limit)

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """docker's ``--restart`` value.  InvalidArgument otherwise."""
        name, sep, count = text.partition(":")
        if name not in POLICIES:
            raise InvalidArgument(f"invalid restart policy {text!r}",
                                  hint="use no, on-failure[:max-retries], always or unless-stopped")
        if sep and name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {text!r}: maximum retry count cannot be used with "
                                  f"restart policy '{name}'")
        if sep and (not count.isdigit()):
            raise InvalidArgument(f"invalid restart policy {text!r}: the maximum retry count must be a "
                                  "non-negative integer")
        return cls(name=name, maximum=int(count) if sep else 0)

    @property
    def restarts(self) -> bool:
        return self.name != "no"


def restart_config(policy: RestartPolicy, *, auto_remove: bool) -> dict[str, Any]:
    """What ``create`` keeps under ``restart`` in the record's config (its ``extra_config``)."""
    return {"policy": policy.name, "max": policy.maximum, "auto_remove": auto_remove, "count": 0,
            "delay": 0.0, "stopped_by_user": False}


def _state(record: Container) -> dict[str, Any]:
    raw = record.config.get(KEY)
    return dict(raw) if isinstance(raw, dict) else {}


def policy_of(record: Container) -> RestartPolicy:
    state = _state(record)
    return RestartPolicy(name=str(state.get("policy") or "no"), maximum=int(state.get("max") or 0))


def restart_count(record: Container) -> int:
    """docker's RestartCount: the restarts the policy made since the user last started it."""
    return int(_state(record).get("count") or 0)


def restarting(info: ContainerInfo) -> bool:
    """Whether its policy is about to start the exited container again (docker's State.Restarting)."""
    return (info.status.state == EXITED and KEY in info.record.config
            and os.path.exists(os.path.join(info.bundle, RESTARTING)))


def restart_info(info: ContainerInfo) -> dict[str, Any]:
    """For inspect: docker's ``RestartCount``, ``State.Restarting``, ``HostConfig.RestartPolicy`` and ``AutoRemove``."""
    policy = policy_of(info.record)
    return {"RestartCount": restart_count(info.record), "Restarting": restarting(info),
            "RestartPolicy": {"Name": policy.name, "MaximumRetryCount": policy.maximum},
            "AutoRemove": bool(_state(info.record).get("auto_remove"))}


def mark_stopped_by_user(manager: ContainerManager, text: str, *, restarting: bool = False) -> Container:
    """Before a user's stop or kill: the exit that follows restarts nothing.
    ``restarting`` (``hawser restart``): nor is it removed (``-d --rm``): the
    user starts it again.  The record (NotFound as ``lookup``)."""
    record = manager.lookup(text)
    state = _state(record)
    if restarting and state:
        record = manager.records.update(record.id, namespace=record.namespace,
                                        config={KEY: {"stopped_by_user": True, "restarting": True}})
    elif policy_of(record).restarts and not state.get("stopped_by_user"):
        record = manager.records.update(record.id, namespace=record.namespace,
                                        config={KEY: {"stopped_by_user": True}})
    return record


def _settled(manager: ContainerManager, record: Container) -> Container:
    """After the mark: a restart a cleanup had begun under the container's
    lock is finished (the stop then finds it running); one not begun yet sees the mark."""
    if policy_of(record).restarts:
        with manager._locked(record.id):
            pass
    return record


def user_stop(manager: ContainerManager, text: str, timeout: float | None) -> None:
    """``hawser stop``: marked stopped by the user, then stopped."""
    manager.stop(_settled(manager, mark_stopped_by_user(manager, text)).id, timeout)


def user_kill(manager: ContainerManager, text: str, sig: int) -> None:
    """``hawser kill``: marked stopped by the user, then signalled."""
    manager.kill(_settled(manager, mark_stopped_by_user(manager, text)).id, sig)


def user_start(manager: ContainerManager, text: str) -> ContainerInfo:
    """``hawser start``: a created or exited container starts; its policy
    counts from 0 again and applies again (docker's start resets both)."""
    record = manager.lookup(text)
    state = _state(record)
    if state.get("stopped_by_user") or state.get("count") or state.get("restarting"):
        manager.records.update(record.id, namespace=record.namespace,
                               config={KEY: {"stopped_by_user": False, "count": 0, "delay": 0.0,
                                             "restarting": False}})
    status = manager.status(record)
    if status.state in (RUNNING, PAUSED):  # as docker: starting a running container is no error
        return manager.info(record)
    return manager.start(record.id)


def user_restart(manager: ContainerManager, text: str, timeout: float | None) -> ContainerInfo:
    """``hawser restart``: stop (if running), then start, the same container."""
    # The stop's exit is neither restarted (its policy) nor removed (-d --rm) by its cleanup.
    record = _settled(manager, mark_stopped_by_user(manager, text, restarting=True))
    status = manager.status(record)
    if status.state in (RUNNING, PAUSED):
        manager.stop(record.id, timeout)
    return user_start(manager, record.id)


def update_policy(manager: ContainerManager, text: str, policy: RestartPolicy, exit_command: Sequence[str]
                  ) -> bool:
    """``hawser update --restart``: the container's new policy, kept in its
    record (NotFound as ``lookup``).  ``exit_command``: the cleanup command
    (as create's), kept in the record for the container's next conmon when it
    has none.  Whether the policy applies to the container's current or next
    run: an exited container's next start gets a conmon with the command; a
    created, running or paused one's conmon (started at create) must have been
    given it (the cleanup it runs reads the policy from the record at the
    exit), else the policy applies from its next start after this run.
    InvalidArgument for a policy on a container removed when it exits (docker's refusal)."""
    record = manager.lookup(text)
    state = _state(record)
    if policy.restarts and state.get("auto_remove"):
        raise InvalidArgument(f"cannot update container {record.name}: restart policy cannot be updated "
                              "because AutoRemove is enabled for the container")
    entries: dict[str, Any] = {"policy": policy.name, "max": policy.maximum}
    if not state:
        entries = {**restart_config(policy, auto_remove=False), **entries}
    if policy.restarts and not (record.config.get("exit_command") or state.get("exit_command")):
        entries["exit_command"] = list(exit_command)
    record = manager.records.update(record.id, namespace=record.namespace, config={KEY: entries})
    refresh_spec_copy(manager, record)
    return manager.status(record).state == EXITED or _conmon_armed(manager, record)


def _conmon_armed(manager: ContainerManager, record: Container) -> bool:
    """Whether the container's conmon runs an exit command (its command line says)."""
    try:
        with open(os.path.join(manager.bundle(record.id), "conmon.pid"), encoding="ascii") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"\0--exit-command\0" in f.read()
    except (OSError, ValueError):
        return bool(record.config.get("exit_command"))


def refresh_spec_copy(manager: ContainerManager, record: Container) -> None:
    """After ``update``: a running container with a policy gets the copy of its
    spec a reboot restarts it from (as at its start), with the limits it has now."""
    if policy_of(record).restarts and manager.status(record).state in (RUNNING, PAUSED):
        keep_spec(manager, record)


# --- the exit command -----------------------------------------------------------


def _wanted(policy: RestartPolicy, state: dict[str, Any], exit_code: int | None) -> bool:
    if state.get("stopped_by_user"):
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.maximum == 0 or int(state.get("count") or 0) < policy.maximum)
    return False


def cleanup(manager: ContainerManager, id_: str, *, sleep: Callable[[float], object] = time.sleep) -> str:
    """What conmon's exit command does once the container has exited:
    ``removed`` (--rm; the caller removes its anonymous volumes),
    ``restarted``, or ``left`` (``gone`` if it no longer exists).  The
    restart waits docker's backoff delay first; if meanwhile the user
    started, stopped or removed the container, nothing more is done."""
    try:
        record = manager.records.get(id_)
    except NotFound:
        return "gone"
    status = manager.status(record)
    if status.state != EXITED:
        return "left"  # started again already (a user's start raced this)
    policy, state = policy_of(record), _state(record)
    if state.get("restarting"):
        return "left"  # hawser restart starts it
    if not _wanted(policy, state, status.exit_code):
        if state.get("auto_remove"):
            with contextlib.suppress(NotFound):
                manager.remove(id_, force=True)
            return "removed"
        return "left"
    previous = float(state.get("delay") or 0.0)
    ran = (status.finished_at or time.time()) - (status.started_at or 0.0)
    delay = FIRST_DELAY if previous <= 0 or ran >= RESET_AFTER else min(previous * 2, MAX_DELAY)
    manager.records.update(id_, namespace=record.namespace, config={KEY: {"delay": delay}})
    marker = os.path.join(manager.bundle(id_), RESTARTING)
    try:
        with contextlib.suppress(OSError):  # (the bundle gone: an rm is under way)
            write_text(marker, repr(time.time()))  # ps: "Restarting (1) ...", as docker's during the delay
        sleep(delay)
        return _restart_now(manager, id_, policy, status)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def _restart_now(manager: ContainerManager, id_: str, policy: RestartPolicy, status: ContainerStatus) -> str:
    """The restart, after the delay: unless the user started, stopped or removed it meanwhile."""
    lock = manager._lock(id_)
    try:
        try:
            record = manager.records.get(id_)
        except NotFound:  # removed while this slept: its lock goes too, as rm's does
            lock.release(remove=True)
            return "gone"
        now = manager.status(record)
        state = _state(record)
        if now.state != EXITED or now.started_at != status.started_at or not _wanted(policy, state, now.exit_code):
            return "left"
        record = manager.records.update(id_, namespace=record.namespace,
                                        config={KEY: {"count": int(state.get("count") or 0) + 1}})
        manager._start_any(record, now)
    finally:
        lock.release()  # idempotent: a no-op after the release above
    return "restarted"


# --- after a reboot ---------------------------------------------------------------


def _spec_copy(manager: ContainerManager, id_: str) -> str:
    return os.path.join(os.path.dirname(manager.log_path(id_)), SPEC_COPY)


def keep_spec(manager: ContainerManager, record: Container) -> None:
    """At each start of a container with a policy: a copy of its spec where a
    reboot leaves it (beside its log, under the root; it goes with the log at
    rm), for ``restart_on_boot``; its existence says the container has run."""
    if not policy_of(record).restarts:
        return
    source = os.path.join(manager.bundle(record.id), "config.json")
    target = _spec_copy(manager, record.id)
    with contextlib.suppress(FileNotFoundError), open(source, encoding="utf-8") as f:
        write_text(target, f.read())


def _rebuild_bundle(manager: ContainerManager, record: Container) -> None:
    """A bundle made again after a reboot emptied the state dir: the spec's
    copy, the rootfs mount point (mounted by the start), runc's old state gone."""
    bundle = manager.bundle(record.id)
    copy = _spec_copy(manager, record.id)
    if not os.path.exists(copy):
        raise FailedPrecondition(f"container {record.name}: no copy of its spec to make it again",
                                 hint="remove it and run a new one")
    with open(copy, encoding="utf-8") as f:
        spec = json.load(f)
    networking = manager.networking
    if networking is not None and "network" in record.config:
        # Its pinned namespace and files were in the state dir too: what the reboot left
        # elsewhere (IPAM leases, the CNI cache, endpoints) goes, then it joins again.
        with contextlib.suppress(HawserError, OSError):
            networking.leave(record)
        joined = networking.join(record, hostname=str(spec.get("hostname") or ""))
        if joined.netns not in (None, "host"):
            for ns in spec.get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network":
                    ns["path"] = joined.netns
        if joined.networks:
            manager.records.update(record.id, namespace=record.namespace, config={"networks": joined.networks})
    os.makedirs(os.path.join(bundle, "rootfs"), mode=0o700, exist_ok=True)
    os.chmod(bundle, 0o700)
    write_json(os.path.join(bundle, "config.json"), spec)
    # _start_again reads the exit of the last run from conmon's exit file: an unknown one.
    write_text(os.path.join(manager.exits_dir, record.id), "-1")


def _wanted_at_boot(policy: RestartPolicy, state: dict[str, Any], exit_code: int | None) -> bool:
    """dockerd's choice at its start (a new restart manager's ShouldRestart):
    ``always`` even when its user stopped it, ``unless-stopped`` unless so,
    ``on-failure`` after a failure (a run the reboot ended is one) below its maximum."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not state.get("stopped_by_user")
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.maximum == 0 or int(state.get("count") or 0) < policy.maximum)
    return False


def restart_on_boot(manager: ContainerManager) -> list[tuple[str, str]]:
    """Start the containers a restart policy wants running again after a
    reboot (or by hand: the exited ones), as dockerd does at its start (see
    ``_wanted_at_boot``); one that never started stays as it is.  Each one
    started or failed: its name and ``started`` or the error."""
    done: list[tuple[str, str]] = []
    for record in manager.records.list():
        if not policy_of(record).restarts or not manager.restartable(record):
            continue
        with manager._locked(record.id):
            try:
                record = manager.records.get(record.id, namespace=record.namespace)
                status = manager.status(record)
                if status.state == UNKNOWN and manager.runc_for(record).state(record.id) is None:
                    if not os.path.exists(_spec_copy(manager, record.id)):
                        continue  # it never started
                    if not _wanted_at_boot(policy_of(record), _state(record), None):
                        continue
                    _rebuild_bundle(manager, record)
                    status = manager.status(record)
                if status.state != EXITED or not _wanted_at_boot(policy_of(record), _state(record),
                                                                 status.exit_code):
                    continue
                if _state(record).get("stopped_by_user"):  # an always container: its policy holds again
                    record = manager.records.update(record.id, namespace=record.namespace,
                                                    config={KEY: {"stopped_by_user": False}})
                manager._start_any(record, status)
            except (HawserError, OSError) as exc:
                done.append((record.name, str(exc)))
                continue
        done.append((record.name, "started"))
    return done


__all__ = [
    "KEY",
    "POLICIES",
    "RestartPolicy",
    "cleanup",
    "keep_spec",
    "mark_stopped_by_user",
    "policy_of",
    "restart_config",
    "restart_count",
    "restart_info",
    "restart_on_boot",
    "restarting",
    "user_kill",
    "user_restart",
    "user_start",
    "user_stop",
]
