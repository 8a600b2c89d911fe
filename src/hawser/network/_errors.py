"""CNI plugin failures (spec section 5, "Error") turned into hawser's error kinds.

A plugin reports an error with a non-zero exit and ``{"code", "msg",
"details"}`` on stdout (some write it to stderr).  The well-known codes map to
the kind a caller can act on; what the plugin said is kept, whole, in
``CNIError.failures`` and in the one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hawser._dataclass import dataclass
from hawser.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    HawserError,
    Internal,
    NotFound,
    Unavailable,
)

# Spec 1.0 well-known error codes (0-99 reserved; 50/51 come from spec 1.1).
CODE_NAMES = {
    1: "incompatible CNI version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid environment variables",
    5: "I/O failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
    50: "the plugin is not available",
    51: "the plugin is not available, existing containers may be damaged",
    999: "internal plugin error",  # libcni's ErrInternal, what Go plugins report for most failures
}


@dataclass(frozen=True, slots=True)
class PluginFailure:
    """What one plugin execution said when it failed."""

    plugin: str  # the plugin type, e.g. "bridge"
    command: str  # ADD, DEL, CHECK, ...
    network: str
    msg: str
    code: int | None = None  # None when the plugin printed no error object
    details: str = ""
    stderr: str = ""
    exit_status: int | None = None
    timed_out: bool = False

    def describe(self) -> str:
        code = ""
        if self.code is not None:
            code = f" (code {self.code}" + (f", {CODE_NAMES[self.code]}" if self.code in CODE_NAMES else "") + ")"
        text = f"{self.plugin} {self.command}{code}: {self.msg}"
        if self.details and self.details != self.msg:
            text += f": {self.details}"
        return text


class CNIError(HawserError):
    """Raised when CNI plugins fail; also an instance of the mapped error kind
    (``Unavailable``, ``FailedPrecondition``...).  ``failures`` holds every
    plugin failure of the operation, first one first."""

    failures: tuple[PluginFailure, ...]

    def __init__(self, message: str, failures: Sequence[PluginFailure], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failures = tuple(failures)


class CNIUnavailable(CNIError, Unavailable):
    pass


class CNIFailedPrecondition(CNIError, FailedPrecondition):
    pass


class CNINotFound(CNIError, NotFound):
    pass


class CNIInternal(CNIError, Internal):
    pass


class CNIDeadlineExceeded(CNIError, DeadlineExceeded):
    pass


_KIND_BY_CODE: dict[int, type[CNIError]] = {
    1: CNIFailedPrecondition, 2: CNIFailedPrecondition, 7: CNIFailedPrecondition,
    3: CNINotFound,
    4: CNIInternal, 6: CNIInternal,  # hawser handed the plugin bad input: a bug here
    5: CNIUnavailable, 11: CNIUnavailable, 50: CNIUnavailable, 51: CNIUnavailable,
}

_HINTS: dict[type[CNIError], str] = {
    CNIFailedPrecondition: "check the CNI network config and the plugins' versions",
    CNIUnavailable: "see the plugin's message; retrying may help",
}


def cni_error(message: str, failures: Sequence[PluginFailure]) -> CNIError:
    """The error for ``failures`` (at least one), of the first failure's kind."""
    first = failures[0]
    if first.timed_out:
        kind: type[CNIError] = CNIDeadlineExceeded
    elif first.code is None:
        kind = CNIUnavailable
    else:
        kind = _KIND_BY_CODE.get(first.code, CNIUnavailable)
    detail = "; ".join(f.describe() for f in failures)
    return kind(f"{message}: {detail}", failures, hint=_HINTS.get(kind))


def parse_failure(*, plugin: str, command: str, network: str, exit_status: int, stdout: bytes,
                  stderr: bytes) -> PluginFailure:
    """Read the error object a plugin printed (stdout, else stderr); fall back
    to its last stderr line.  Never raises."""
    err_text = stderr.decode(errors="replace").strip()
    for stream in (stdout, stderr):
        text = stream.decode(errors="replace").strip()
        if not text.startswith("{"):
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if not isinstance(obj, dict) or not ("msg" in obj or "code" in obj):
            continue
        code = obj.get("code")
        return PluginFailure(plugin=plugin, command=command, network=network,
                             msg=str(obj.get("msg") or "no message"),
                             code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                             details=str(obj.get("details") or ""), stderr=err_text[-4000:],
                             exit_status=exit_status)
    lines = [line for line in err_text.splitlines() if line.strip()]
    msg = lines[-1][-2000:] if lines else f"exited with status {exit_status} and no message"
    return PluginFailure(plugin=plugin, command=command, network=network, msg=msg, stderr=err_text[-4000:],
                         exit_status=exit_status)
