"""The in-memory limiter's cost per request: counters on the loop, no thread per hit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from upload_service.config import load_settings
from upload_service.edge.rate_limits import RateLimits


async def test_a_hit_never_hops_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # A moving window's memory storage expired its entries through asyncio.to_thread on every
    # hit: a thread hop per request, and the user's lock held across it.
    hops: list[Any] = []

    async def no_thread(*args: Any, **kwargs: Any) -> None:
        hops.append(args)

    monkeypatch.setattr(asyncio, "to_thread", no_thread)
    limits = RateLimits(load_settings(query_rate_limit="1000/minute", jwt_secret="x" * 32))
    for _ in range(50):
        outcome = await limits.hit("query", "alice")
        assert outcome is not None
        assert outcome.allowed
        await asyncio.sleep(0)  # let any expiry task the storage scheduled run
    assert hops == []


async def test_the_window_counts_each_request_once_and_refuses_past_the_limit() -> None:
    limits = RateLimits(load_settings(query_rate_limit="5/minute", jwt_secret="x" * 32))
    remaining = []
    for _ in range(5):
        outcome = await limits.hit("query", "alice")
        assert outcome is not None
        assert outcome.allowed
        remaining.append(outcome.remaining)
        assert time.time() < outcome.reset_at <= time.time() + 61
    assert remaining == [4, 3, 2, 1, 0]
    refused = await limits.hit("query", "alice")
    assert refused is not None
    assert not refused.allowed
    other = await limits.hit("query", "bob")
    assert other is not None
    assert other.allowed
