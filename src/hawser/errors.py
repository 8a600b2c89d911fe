"""The fixed set of error kinds every part of hawser raises.

Each kind carries a message that says what failed and on what; an optional
``hint`` says what the user can do about it.  The CLI prints one line per
error, the daemon maps kinds to gRPC status codes in exactly one function.
"""

from __future__ import annotations


class HawserError(Exception):
    """Base of every error kind hawser raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class NotFound(HawserError):
    """The named object (blob, image, snapshot, container...) does not exist."""


class AlreadyExists(HawserError):
    """An object with this key exists already."""


class InvalidArgument(HawserError):
    """The request or input is malformed: bad reference, bad manifest, hostile layer."""


class FailedPrecondition(HawserError):
    """The object exists but is in the wrong state for the operation."""


class Unavailable(HawserError):
    """A peer (registry, runtime, plugin) could not be reached; retrying may help."""


class PermissionDenied(HawserError):
    """Authentication or authorisation was refused."""


class DataLoss(HawserError):
    """Bytes did not match their digest or size: corrupt or tampered content."""


class ResourceExhausted(HawserError):
    """A resource ran out: disk space, a size limit, a quota."""


class Unimplemented(HawserError):
    """A format or feature hawser refuses on purpose (e.g. Docker schema 1)."""


class DeadlineExceeded(HawserError):
    """An operation ran past its deadline or stalled past its stall timeout."""


class OutOfRange(HawserError):
    """A position past what exists: a read past a blob's end, a write at another offset than an ingest's."""


class Internal(HawserError):
    """A bug: an invariant broke. Reported with the context it broke in."""


def error_kind(exc: HawserError) -> str:
    """The name of the kind (a class of this module) ``exc`` is: a subclass
    defined elsewhere (CNIUnavailable...) goes as its base kind."""
    return next(k.__name__ for k in type(exc).__mro__ if k.__module__ == __name__)
