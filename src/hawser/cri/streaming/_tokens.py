"""Single-use, expiring tokens that stand for a registered streaming request.

The CRI Exec/Attach/PortForward calls only return a URL; the URL's token is
the request.  A token works once and only for a short while, so a URL that
leaks (logs, process lists) is useless soon after.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from hawser.errors import ResourceExhausted

T = TypeVar("T")


class TokenCache(Generic[T]):
    """Requests by token; ``consume`` hands each out at most once, before its expiry."""

    def __init__(self, *, ttl: float, max_pending: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0:
            raise ValueError("token ttl must be positive")
        self._ttl = ttl
        self._max_pending = max_pending
        self._clock = clock
        # Insertion order is expiry order (one ttl for all): purging pops from the front.
        self._entries: dict[str, tuple[float, T]] = {}

    def __len__(self) -> int:
        self._purge()
        return len(self._entries)

    def insert(self, request: T) -> str:
        """Register ``request``; its new token. ResourceExhausted when too many are pending."""
        self._purge()
        if len(self._entries) >= self._max_pending:
            raise ResourceExhausted(f"{len(self._entries)} streaming requests are pending already",
                                    hint="retry once clients have connected or their URLs expired")
        token = secrets.token_urlsafe(24)
        self._entries[token] = (self._clock() + self._ttl, request)
        return token

    def consume(self, token: str) -> T | None:
        """The request for ``token`` and forget it; None if unknown, used or expired."""
        entry = self._entries.pop(token, None)
        if entry is None:
            return None
        expires, request = entry
        if self._clock() >= expires:
            return None
        return request

    def clear(self) -> None:
        self._entries.clear()

    def _purge(self) -> None:
        now = self._clock()
        for token, (expires, _request) in list(self._entries.items()):
            if expires > now:
                break
            del self._entries[token]
