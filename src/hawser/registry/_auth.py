"""What the client remembers about authenticating to registries.

Per registry host: the challenge it answered with (so later requests can
authenticate up front instead of collecting a 401 each time).  Per (host,
scope): the bearer token and when it expires.  The pull fetches layers from
several threads at once, so every access goes through one lock, and a token
is fetched by one thread while the others wait for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from hawser._dataclass import dataclass
from hawser.errors import Unavailable
from hawser.registry._challenge import Challenge

# docker's token spec: "expires_in ... When omitted, this defaults to 60 seconds."
DEFAULT_TOKEN_LIFETIME = 60.0
# Refresh a little before expiry so a token does not lapse in flight.
_MAX_EARLY_REFRESH = 10.0


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # on the client's clock


def scope_for(repository: str, *, push: bool = False) -> str:
    """The token scope for pulling (or pulling and pushing) one repository."""
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


def parse_token_response(data: bytes, *, now: float, where: str) -> Token:
    """A Token from a token server's JSON answer (docker's token spec, OAuth2).

    Raises Unavailable when the answer carries no usable token.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Unavailable(f"token server {where} answered with something that is not JSON") from None
    if not isinstance(doc, dict):
        raise Unavailable(f"token server {where} answered with JSON that is not an object")
    # "token" is docker's field, "access_token" OAuth2's; servers may send both.
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise Unavailable(f"token server {where} answered without a token")
    lifetime = doc.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    early = min(_MAX_EARLY_REFRESH, float(lifetime) / 4)
    return Token(value=value, expires_at=now + float(lifetime) - early)


class AuthCache:
    """Challenges per host and tokens per (host, scope); safe across threads."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._fetch_locks: dict[tuple[str, str], threading.Lock] = {}

    def challenge(self, host: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(host)

    def learn(self, host: str, challenge: Challenge) -> None:
        with self._lock:
            old = self._challenges.get(host)
            self._challenges[host] = challenge
            if old is not None and old != challenge:
                # A new realm or scheme makes every token of the host suspect.
                for key in [k for k in self._tokens if k[0] == host]:
                    del self._tokens[key]

    def token(self, host: str, scope: str) -> Token | None:
        """The cached token for ``scope`` (or one that covers it) if still fresh."""
        with self._lock:
            for key in self._covering(host, scope):
                tok = self._tokens.get(key)
                if tok is None:
                    continue
                if self._clock() >= tok.expires_at:
                    del self._tokens[key]
                    continue
                return tok
            return None

    @staticmethod
    def _covering(host: str, scope: str) -> list[tuple[str, str]]:
        keys = [(host, scope)]
        # A pull,push token (left by a push) serves pulls of the same repository.
        if scope.endswith(":pull"):
            keys.append((host, scope + ",push"))
        return keys

    def store(self, host: str, scope: str, token: Token) -> None:
        with self._lock:
            self._tokens[(host, scope)] = token

    def invalidate(self, host: str, scope: str, value: str | None = None) -> None:
        """Forget a token (only ``value`` if given: another thread may have a newer one)."""
        with self._lock:
            for key in self._covering(host, scope):
                tok = self._tokens.get(key)
                if tok is not None and (value is None or tok.value == value):
                    del self._tokens[key]

    def fetch_lock(self, host: str, scope: str) -> threading.Lock:
        """A lock per (host, scope) so one thread fetches while the rest wait."""
        with self._lock:
            return self._fetch_locks.setdefault((host, scope), threading.Lock())
