"""Sliding-window counters kept in this process: the `limits` library's algorithm, on a dict.

`limits` keeps the counters when they live in Redis, shared by every worker. For `memory://`
its storage costs more than the rest of an authenticated read's rate limiting together: two
string keys built per call, a lock per key, and a timer thread restarted every 10 ms to expire
them. Here a user's window is one small record, the event loop is the only caller (no lock),
and stale records are dropped once per window. The arithmetic is limits' own
(`SlidingWindowCounterRateLimiter` over its `MemoryStorage`), and a test holds the two to the
same answers, so a limit means the same with or without Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    index: int  # which window of `period_s` seconds `current` counts
    previous: int
    current: int
    period_s: int


@dataclass(frozen=True, slots=True)
class WindowHit:
    """One hit counted (or refused), with the figures for the rate-limit headers."""

    allowed: bool
    remaining: int
    reset_at: float


class SlidingWindowCounters:
    """Per-key sliding-window counters; call from one thread (the event loop)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._swept_at = clock()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: str, limit: int, period_s: int) -> WindowHit:
        """Count one hit of `key` against `limit` per `period_s` seconds, unless it is spent."""
        now = self._clock()
        self._sweep(now, period_s)
        index = int(now // period_s)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(index, 0, 0, period_s)
        elif window.index != index:
            # The current window became the previous one, or both are long gone.
            window.previous = window.current if window.index == index - 1 else 0
            window.current = 0
            window.index = index
        # The previous window's count weighs as much as it still overlaps the sliding window.
        previous_expires_in = (index + 1) * period_s - now
        weight = window.previous * previous_expires_in / period_s
        allowed = math.floor(weight + window.current) + 1 <= limit
        if allowed:
            window.current += 1
        remaining = max(0, limit - math.floor(weight + window.current))
        return WindowHit(allowed, remaining, now + self._reset_in(window, previous_expires_in))

    @staticmethod
    def _reset_in(window: _Window, previous_expires_in: float) -> float:
        # As limits reports it: the sooner of the previous window freeing one hit's weight
        # and the current window ending.
        candidates = []
        if window.previous:
            candidates.append(previous_expires_in % (window.period_s / window.previous))
        if window.current:
            candidates.append(previous_expires_in % window.period_s)
        return min(candidates, default=0.0)

    def _sweep(self, now: float, period_s: int) -> None:
        # Once a window: a record whose windows have both passed counts nothing any more.
        if now - self._swept_at < period_s:
            return
        self._swept_at = now
        stale = [
            key
            for key, window in self._windows.items()
            if window.index < int(now // window.period_s) - 1
        ]
        for key in stale:
            del self._windows[key]
