"""docker's credential helpers: ``docker-credential-NAME get|store|erase|list``.

A helper is a program on PATH that keeps secrets somewhere better than a
JSON file (a keychain, pass, a cloud's token service).  It speaks JSON on
stdin and stdout (docker-credential-helpers' protocol):

    get     stdin: the server URL            stdout: {"ServerURL", "Username", "Secret"}
    store   stdin: {"ServerURL", "Username", "Secret"}
    erase   stdin: the server URL
    list    stdin: nothing                   stdout: {"<server URL>": "<username>", ...}

A ``get`` or ``erase`` of a server it holds nothing for exits non-zero with
"credentials not found in native keychain" on stdout.  A ``<token>`` user
name means the secret is an identity (refresh) token, not a password.

Every call goes through the one process runner (``hawser.host.run_process``)
with a timeout: a helper that hangs (a keychain waiting for a desktop prompt
that never comes) costs the timeout and one clear line, never a stuck pull.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading

from hawser.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from hawser.registry._credentials import DEFAULT_HELPER_TIMEOUT, Credentials

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Callable

PROGRAM_PREFIX = "docker-credential-"
# What helpers print (docker-credential-helpers' credentials.errCredentialsNotFound).
NOT_FOUND_MESSAGE = "credentials not found in native keychain"
# The user name that marks the secret as an identity token.
TOKEN_USERNAME = "<token>"
# How long a helper's answer is reused: a pull asks for each request that needs
# a token, and a helper costs a process start (a keychain, much more).
_CACHE_SECONDS = 60.0
_log = logging.getLogger("hawser.registry")
# Helpers answer in a few hundred bytes; a line of an error is enough of the rest.
_MAX_DETAIL = 200


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    line = "".join(c if c.isprintable() else " " for c in (text.splitlines()[0] if text else ""))
    return line[:_MAX_DETAIL] + ("..." if len(line) > _MAX_DETAIL else "")


class HelperMissing(FailedPrecondition):
    """The helper a docker config names is not on PATH."""


class CredentialHelper:
    """One ``docker-credential-NAME`` program, run with a timeout per call.

    ``search_path`` is where to look for it (default: $PATH).  Stateless:
    safe to share between threads.
    """

    def __init__(self, name: str, *, timeout: float = DEFAULT_HELPER_TIMEOUT, search_path: str | None = None,
                 where: str = "") -> None:
        """``where`` says which setting named the helper (for messages).  Raises
        InvalidArgument for a name that is empty or holds a "/" (it must not
        point outside PATH)."""
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise InvalidArgument(f"{where or 'docker config'}: {name!r} is not a credential helper name",
                                  hint="a helper is named by the NAME of docker-credential-NAME on PATH")
        if not timeout > 0:
            raise InvalidArgument(f"credential helper timeout must be positive, not {timeout!r}")
        self.name = name
        self.program = PROGRAM_PREFIX + name
        self.timeout = timeout
        self._search_path = search_path
        self._where = where

    def __repr__(self) -> str:
        return f"CredentialHelper({self.name!r})"

    def _executable(self) -> str:
        found = shutil.which(self.program, path=self._search_path)
        if found is None:
            named = f" (named by {self._where})" if self._where else ""
            raise HelperMissing(f"credential helper {self.program}{named} is not installed: not found on PATH",
                                     hint=f"install {self.program}, or remove it from the docker config")
        return found

    def _run(self, action: str, data: bytes, server: str) -> tuple[int, bytes, bytes]:
        from hawser.host import ProcessTimedOut, run_process

        about = f" for {server}" if server else ""
        try:
            result = run_process([self._executable(), action], input=data, timeout=self.timeout)
        except ProcessTimedOut:
            raise DeadlineExceeded(
                f"credential helper {self.program} {action}{about} did not answer within {self.timeout:g}s",
                hint="the helper may be waiting for a keychain to unlock; "
                     "registry.credential_helper_timeout in the hawser config sets the limit") from None
        except OSError as exc:
            raise Unavailable(f"cannot run credential helper {self.program}: {exc.strerror or exc}") from None
        return result.returncode, result.stdout, result.stderr

    def _failed(self, action: str, server: str, code: int, out: bytes, err: bytes) -> Unavailable:
        about = f" for {server}" if server else ""
        detail = _first_line(out) or _first_line(err)
        how = f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
        return Unavailable(f"credential helper {self.program} {action}{about} failed ({how})"
                           + (f": {detail}" if detail else ""))

    def get(self, server: str) -> Credentials | None:
        """The credentials the helper holds for ``server`` (a server URL as
        docker names it), or None when it holds none.  Raises Unavailable (the
        helper failed or answered garbage), DeadlineExceeded (timeout),
        FailedPrecondition (not installed)."""
        code, out, err = self._run("get", server.encode(), server)
        if code != 0:
            if NOT_FOUND_MESSAGE in out.decode("utf-8", "replace"):
                return None
            raise self._failed("get", server, code, out, err)
        try:
            doc = json.loads(out)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Unavailable(f"credential helper {self.program} get for {server} answered with something "
                              "that is not JSON") from None
        if not isinstance(doc, dict):
            raise Unavailable(f"credential helper {self.program} get for {server} answered with JSON that "
                              "is not an object")
        username, secret = doc.get("Username", ""), doc.get("Secret", "")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise Unavailable(f"credential helper {self.program} get for {server}: Username and Secret "
                              "must be strings")
        if username == TOKEN_USERNAME:
            # As docker's config.json spells an identity token: the <token> user, the token beside.
            return Credentials(username=username, identity_token=secret) if secret else None
        if not username and not secret:
            return None
        return Credentials(username=username, password=secret)

    def store(self, server: str, creds: Credentials) -> None:
        """Hand ``creds`` for ``server`` to the helper.  Raises what ``get`` raises."""
        if creds.identity_token:
            doc = {"ServerURL": server, "Username": TOKEN_USERNAME, "Secret": creds.identity_token}
        else:
            doc = {"ServerURL": server, "Username": creds.username, "Secret": creds.password}
        code, out, err = self._run("store", json.dumps(doc).encode(), server)
        if code != 0:
            raise self._failed("store", server, code, out, err)

    def erase(self, server: str) -> bool:
        """Have the helper forget ``server``; False when it held nothing for it."""
        code, out, err = self._run("erase", server.encode(), server)
        if code != 0:
            if NOT_FOUND_MESSAGE in out.decode("utf-8", "replace"):
                return False
            raise self._failed("erase", server, code, out, err)
        return True

    def list(self) -> dict[str, str]:
        """Server URL -> user name of every server the helper holds credentials for."""
        code, out, err = self._run("list", b"", "")
        if code != 0:
            raise self._failed("list", "", code, out, err)
        try:
            doc = json.loads(out or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Unavailable(f"credential helper {self.program} list answered with something that is not JSON") \
                from None
        if not isinstance(doc, dict):
            raise Unavailable(f"credential helper {self.program} list answered with JSON that is not an object")
        return {str(k): str(v) for k, v in doc.items()}


class HelperCache:
    """Helper answers for a while, per (helper, server): one helper run per
    registry per pull, not one per request.  Threads asking for the same
    server wait for one run.  A helper that is not installed answers None
    (logged at info); other failures are raised and not kept: the next request asks again."""

    def __init__(self, clock: Callable[[], float] | None = None, ttl: float = _CACHE_SECONDS) -> None:
        import time

        self._clock = clock or time.monotonic
        self._ttl = ttl
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], tuple[float, Credentials | None]] = {}
        self._running: dict[tuple[str, str], threading.Lock] = {}

    def get(self, helper: CredentialHelper, server: str) -> Credentials | None:
        key = (helper.program, server)
        with self._lock:
            run_lock = self._running.setdefault(key, threading.Lock())
        with run_lock:
            with self._lock:
                kept = self._answers.get(key)
            if kept is not None and self._clock() < kept[0]:
                return kept[1]
            try:
                creds = helper.get(server)
            except HelperMissing as exc:
                # Info, not a warning: the CLI's one line is the refusal, if one follows.
                _log.info("%s: asking for %s without it", exc.message, server)
                creds = None
            with self._lock:
                self._answers[key] = (self._clock() + self._ttl, creds)
            return creds

    def forget(self, server: str | None = None) -> None:
        """Drop the kept answers (for ``server`` only, if given)."""
        with self._lock:
            for key in [k for k in self._answers if server is None or k[1] == server]:
                del self._answers[key]
