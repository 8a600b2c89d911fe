"""Healthchecks of CLI containers, without a daemon.

A container's check is the image's HEALTHCHECK with the ``--health-*``
overrides laid over it (``merge_healthcheck``, kept in the record's config
under ``healthcheck`` at create).  When the container starts, a small monitor
process of its own is started beside it (``hawser healthcheck monitor ID``,
detached by ``setsid -f``): it sleeps an interval at a time on a pidfd of the
container's conmon, runs the check through an exec, records the result, and
exits the moment conmon does (the container exited, was stopped or removed)
or when a newer monitor has taken over (the container was started again).

Why a process and not podman's systemd timers: hawser runs where there may be
no systemd (a test's private store, a container host without one), a timer
would have to be armed and disarmed in step with every start, stop and rm
(podman leaves stale ones behind when a command is killed), and its interval
is only as fine as systemd's timer accuracy.  A process watching conmon's
pidfd can neither outlive the container for long nor miss its exit, costs
one sleeping interpreter per container with a check, and needs nothing
outside the store.

The state is docker's ``State.Health`` (Status starting|healthy|unhealthy,
FailingStreak, the last five checks' Start, End, ExitCode and Output) in
``health.json`` in the container's bundle, written atomically under a lock
(the monitor and ``hawser healthcheck run`` may record at once); it goes with
the bundle at rm.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from hawser._dataclass import dataclass
from hawser.errors import DeadlineExceeded, FailedPrecondition, HawserError, InvalidArgument, NotFound
from hawser.host import FileLock
from hawser.metadata import Container
from hawser.runtime._conmon import ConmonWatch
from hawser.runtime._files import read_float, read_int, unlink, write_json, write_text
from hawser.runtime._types import EVENT_STARTED, RUNNING, ContainerInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hawser.oci import Healthcheck
    from hawser.runtime._containers import ContainerManager

# docker's defaults (api/types/container: DefaultHealthcheck*).
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
LOG_ENTRIES = 5  # docker keeps the last five results
MAX_OUTPUT = 4096  # bytes of a check's output kept, as docker

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
STATE_FILE = "health.json"
MONITOR_PID_FILE = "health-monitor.pid"

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go duration (``30s``, ``1m30s``, ``500ms``) as docker's
    --health-* flags take it; a bare number is seconds."""
    value = text.strip()
    with contextlib.suppress(ValueError):
        seconds = float(value)
        if seconds >= 0:
            return seconds
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise InvalidArgument(f"invalid duration {text!r}: use a number with a unit (500ms, 30s, 1m30s)")
    return total


def merge_healthcheck(image: Healthcheck | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The check a container runs, as docker merges it: each override given
    (a test; a non-zero duration or retries) replaces the image's value.
    ``overrides``: ``test`` (a list; ``["NONE"]``: --no-healthcheck),
    ``interval``, ``timeout``, ``start_period`` (seconds), ``retries``."""
    test = list(overrides.get("test") or (image.test if image is not None else ()))

    def pick(key: str) -> Any:
        given = overrides.get(key) or 0
        return given or (getattr(image, key) if image is not None else 0)

    return {"test": test, "interval": float(pick("interval")), "timeout": float(pick("timeout")),
            "start_period": float(pick("start_period")), "retries": int(pick("retries"))}


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """A container's check, with docker's defaults filled in."""

    argv: tuple[str, ...]
    interval: float
    timeout: float
    start_period: float
    retries: int

    @classmethod
    def of(cls, record: Container) -> HealthConfig | None:
        """The record's check; None without one (none given, or ``NONE``)."""
        raw = record.config.get("healthcheck")
        if not isinstance(raw, Mapping):
            return None
        test = [str(t) for t in raw.get("test") or ()]
        if not test or test[0] == "NONE":
            return None
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", " ".join(test[1:])]
        elif test[0] == "CMD":
            argv = test[1:]
        else:  # a bare command line, as some images have it
            argv = test
        if not argv:
            return None
        return cls(argv=tuple(argv), interval=float(raw.get("interval") or 0) or DEFAULT_INTERVAL,
                   timeout=float(raw.get("timeout") or 0) or DEFAULT_TIMEOUT,
                   start_period=float(raw.get("start_period") or 0),
                   retries=int(raw.get("retries") or 0) or DEFAULT_RETRIES)


# --- the state file -------------------------------------------------------------


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def read_health(bundle: str) -> dict[str, Any] | None:
    """docker's State.Health of the container with this bundle; None before
    its first start with a check."""
    try:
        with open(os.path.join(bundle, STATE_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def health_state(info: ContainerInfo) -> dict[str, Any] | None:
    """What inspect shows as ``State.Health`` (Status, FailingStreak, Log);
    None for a container without a healthcheck (docker leaves it out)."""
    if HealthConfig.of(info.record) is None:
        return None
    return read_health(info.bundle) or {"Status": STARTING, "FailingStreak": 0, "Log": []}


def health_status(info: ContainerInfo) -> str | None:
    """The health word ps shows beside ``Up ...`` of a running container with a check."""
    if info.status.state != RUNNING or "healthcheck" not in info.record.config:
        return None
    state = health_state(info)
    return None if state is None else str(state.get("Status") or STARTING)


@contextlib.contextmanager
def _state_locked(bundle: str) -> Any:
    lock = FileLock(os.path.join(bundle, "health.lock"))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def reset_health(bundle: str) -> None:
    """A start: the status is ``starting`` again, the streak 0; the log stays (as docker)."""
    with _state_locked(bundle):
        old = read_health(bundle) or {}
        write_json(os.path.join(bundle, STATE_FILE),
                   {"Status": STARTING, "FailingStreak": 0, "Log": list(old.get("Log") or [])})


def _record(bundle: str, config: HealthConfig, started_at: float | None, begin: float, end: float, code: int,
            output: str) -> dict[str, Any]:
    """Docker's bookkeeping of one result (daemon/health.go handleProbeResult)."""
    with _state_locked(bundle):
        state = read_health(bundle) or {"Status": STARTING, "FailingStreak": 0, "Log": []}
        log = [*(state.get("Log") or []), {"Start": _iso(begin), "End": _iso(end), "ExitCode": code,
                                           "Output": output}][-LOG_ENTRIES:]
        streak = int(state.get("FailingStreak") or 0)
        status = str(state.get("Status") or STARTING)
        if code == 0:
            streak, status = 0, HEALTHY
        elif started_at is not None and begin - started_at < config.start_period and status == STARTING:
            pass  # failures while the container starts up do not count
        else:
            streak += 1
            if streak >= config.retries:
                status = UNHEALTHY
        state = {"Status": status, "FailingStreak": streak, "Log": log}
        write_json(os.path.join(bundle, STATE_FILE), state)
        return state


# --- checks ---------------------------------------------------------------------


def check_once(manager: ContainerManager, text: str) -> dict[str, Any]:
    """Run a container's check once and record it; the new state.
    FailedPrecondition without a check or when the container is not running."""
    record = manager.lookup(text)
    config = HealthConfig.of(record)
    if config is None:
        raise FailedPrecondition(f"container {record.name} has no healthcheck defined")
    status = manager.status(record)
    if status.state != RUNNING:
        raise FailedPrecondition(f"container {record.name} is not running ({status.state})")
    return _check(manager, record, config, status.started_at)


def _check(manager: ContainerManager, record: Container, config: HealthConfig,
           started_at: float | None) -> dict[str, Any]:
    begin = time.time()
    try:
        result = manager.exec_sync(record.id, config.argv, timeout=config.timeout)
        code = result.exit_code
        output = (result.stdout + result.stderr)[:MAX_OUTPUT].decode(errors="replace")
    except DeadlineExceeded:
        code, output = -1, f"Health check exceeded timeout ({config.timeout:g}s)"
    except (FailedPrecondition, NotFound):
        raise
    except HawserError as exc:  # the exec could not run: a failed check, as docker counts it
        code, output = -1, str(exc)
    return _record(manager.bundle(record.id), config, started_at, begin, time.time(), code, output)


def monitor(manager: ContainerManager, id_: str) -> None:
    """The loop of ``hawser healthcheck monitor``: a check every interval
    until the container's conmon exits or a newer monitor takes over."""
    try:
        record = manager.records.get(id_)
    except NotFound:
        return
    config = HealthConfig.of(record)
    bundle = manager.bundle(id_)
    started = read_float(os.path.join(bundle, "started"))
    if config is None or started is None:
        return
    pid_file = os.path.join(bundle, MONITOR_PID_FILE)
    try:
        write_text(pid_file, str(os.getpid()))
        reset_health(bundle)
    except OSError:  # the bundle is gone: removed already
        return

    def superseded() -> bool:
        return read_int(pid_file) != os.getpid() or read_float(os.path.join(bundle, "started")) != started

    with ConmonWatch(read_int(os.path.join(bundle, "conmon.pid"))) as conmon:
        while not conmon.wait(config.interval):
            if superseded():
                return
            try:
                status = manager.status(record)
                if status.state != RUNNING:  # paused: no check, as docker
                    continue
                _check(manager, record, config, started)
            except (FailedPrecondition, NotFound, OSError):
                if superseded() or not conmon.alive():
                    return
    with contextlib.suppress(OSError):
        if read_int(pid_file) == os.getpid():
            unlink(pid_file)


def stop_monitor(bundle: str) -> None:
    """End a container's monitor now (rm does; otherwise it goes with conmon)."""
    import signal

    from hawser.host import kill_process

    pid = read_int(os.path.join(bundle, MONITOR_PID_FILE))
    if pid > 0 and _is_monitor(pid):
        kill_process(pid, signal.SIGTERM)


def _is_monitor(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"healthcheck\0monitor" in f.read()
    except OSError:
        return False


def monitor_observer(argv: Sequence[str]) -> Callable[[str, Container, Mapping[str, str]], None]:
    """A container observer that starts ``argv + [ID]`` (the monitor's
    command line), detached, when a container with a check starts."""

    def observe(kind: str, record: Container, _details: Mapping[str, str]) -> None:
        if kind != EVENT_STARTED or "healthcheck" not in record.config or HealthConfig.of(record) is None:
            return
        setsid = shutil.which("setsid") or "/usr/bin/setsid"
        # setsid -f: the monitor leaves this process's session and is nobody's child to reap.
        subprocess.run([setsid, "-f", *argv, record.id], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=10)

    return observe


__all__ = ["DEFAULT_INTERVAL", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "HEALTHY", "STARTING", "UNHEALTHY",
           "HealthConfig", "check_once", "health_state", "health_status", "merge_healthcheck", "monitor",
           "monitor_observer", "parse_duration", "read_health", "reset_health", "stop_monitor"]
