"""Single-use, expiring tokens."""

from __future__ import annotations

import pytest

from hawser.cri.streaming._tokens import TokenCache
from hawser.errors import ResourceExhausted


def test_single_use_and_unguessable() -> None:
    cache: TokenCache[str] = TokenCache(ttl=60)
    tokens = {cache.insert(f"request {index}") for index in range(100)}
    assert len(tokens) == 100
    assert all(len(token) >= 32 for token in tokens)
    token = cache.insert("exec")
    assert cache.consume(token) == "exec"
    assert cache.consume(token) is None
    assert cache.consume("made-up") is None


def test_expiry_and_purging() -> None:
    now = [0.0]
    cache: TokenCache[str] = TokenCache(ttl=10, max_pending=2, clock=lambda: now[0])
    first = cache.insert("first")
    now[0] = 5
    second = cache.insert("second")
    with pytest.raises(ResourceExhausted):
        cache.insert("third")
    now[0] = 10  # the first expires exactly at its ttl
    assert cache.consume(first) is None
    assert len(cache) == 1
    third = cache.insert("third")
    now[0] = 14.9
    assert cache.consume(second) == "second"
    now[0] = 25
    assert cache.consume(third) is None
    assert len(cache) == 0


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenCache(ttl=0)
