"""CRIU, which a container checkpoint needs (``runc checkpoint`` drives it):
whether it can run on this host, and if not, why.

``criu check`` tells: it reads the kernel's features (vDSO, namespaces,
ptrace, soft-dirty tracking...) and fails, with its own error lines on
stderr, where it cannot work: a criu older than the kernel (Debian 12's
3.17.1 on kernel 6.18 fails at "vdso: Unexpected rt vDSO area bounds").
The answer does not change while the process lives, so it is asked once
per process (``criu_status``) and kept; ``probe_criu`` asks again.
"""

from __future__ import annotations

import os
import shutil
import threading

from hawser._dataclass import dataclass

# criu check reads /proc and probes a few syscalls: well under a second.
CRIU_CHECK_TIMEOUT = 30.0
# Debian installs criu in /usr/sbin, which a service's PATH may lack.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True, slots=True)
class CriuStatus:
    """What ``criu check`` said.  ``reason`` says why criu cannot be used
    ("" when it can): "criu is not installed", or criu's own error lines."""

    usable: bool
    reason: str = ""
    binary: str = ""  # the criu found ("" when none is)


def find_criu(search: str | None = None) -> str | None:
    """The criu binary in ``search`` (a PATH-like list; default: PATH and the
    sbin directories); None without one."""
    if search is None:
        search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which("criu", path=search)


def probe_criu(binary: str | None = None, *, timeout: float = CRIU_CHECK_TIMEOUT,
               search: str | None = None) -> CriuStatus:
    """Run ``criu check`` (``binary``, else the one ``find_criu(search)``
    finds) and say whether criu works here.  Blocking; never raises for
    criu's failure: a missing binary, a failed check, one past ``timeout``
    seconds or one that cannot start are all reasons in the answer."""
    from hawser.host import ProcessTimedOut, run_process

    binary = binary or find_criu(search)
    if binary is None:
        return CriuStatus(usable=False, reason="criu is not installed")
    try:
        result = run_process([binary, "check"], timeout=timeout)
    except ProcessTimedOut:
        return CriuStatus(usable=False, reason=f"{binary} check did not finish within {timeout:g}s", binary=binary)
    except OSError as exc:
        return CriuStatus(usable=False, reason=f"{binary} cannot be started: {exc.strerror}", binary=binary)
    if result.returncode == 0:
        return CriuStatus(usable=True, binary=binary)
    # criu writes its errors to stderr (its log goes there without -o); stdout as a fallback.
    said = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
    status = f"exit status {result.returncode}" if result.returncode > 0 else f"signal {-result.returncode}"
    return CriuStatus(usable=False, reason=f"{binary} check failed ({status}):\n{said}" if said
                      else f"{binary} check failed ({status}) and said nothing", binary=binary)


_lock = threading.Lock()
_status: CriuStatus | None = None


def criu_status() -> CriuStatus:
    """``probe_criu``'s answer, asked at the first call of this process and
    kept.  Blocking on that first call (one ``criu check``); thread-safe."""
    global _status
    with _lock:
        if _status is None:
            _status = probe_criu()
        return _status
