"""The verified-token cache: bounded, and never trusted past a token's expiry."""

from __future__ import annotations

import time

from upload_service.edge.auth import Principal, VerifiedTokens

ALICE = Principal(sub="alice", email=None, scopes=frozenset())


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    cache = VerifiedTokens()
    cache.put("token-1", ALICE, expires_at=time.time() + 0.2)
    assert cache.get("token-1") == ALICE
    time.sleep(0.25)
    assert cache.get("token-1") is None


def test_an_expired_token_is_never_served_from_the_cache() -> None:
    cache = VerifiedTokens()
    cache.put("token-1", ALICE, expires_at=time.time() - 1)
    assert cache.get("token-1") is None


def test_only_the_whole_token_matches() -> None:
    cache = VerifiedTokens()
    cache.put("header.payload.signature", ALICE, expires_at=time.time() + 60)
    assert cache.get("header.payload.signaturX") is None
    assert cache.get("header.payload.") is None


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = VerifiedTokens(size=3)
    for name in ("a", "b", "c"):
        cache.put(name, Principal(sub=name, email=None, scopes=frozenset()), time.time() + 60)
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", ALICE, time.time() + 60)
    assert cache.get("b") is None
    assert [cache.get(name) is not None for name in ("a", "c", "d")] == [True, True, True]
