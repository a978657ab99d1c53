"""The in-process counters give limits' answers: a limit means the same with or without Redis."""

from __future__ import annotations

import random
import time

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from upload_service.edge.sliding_window import SlidingWindowCounters


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_answers_as_limits_over_a_random_stream(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    clock = Clock(1_768_473_000.0)
    # limits reads time.time() itself; both see the same clock.
    monkeypatch.setattr(time, "time", clock)
    storage = MemoryStorage()
    reference = SlidingWindowCounterRateLimiter(storage)
    ours = SlidingWindowCounters(clock)
    item = parse("7/minute")
    try:
        for _ in range(400):
            clock.now += rng.choice([0.05, 0.5, 3.0, 11.0, 40.0, 130.0])
            user = rng.choice(["alice", "bob"])
            expected_allowed = reference.hit(item, "query", user)
            expected = reference.get_window_stats(item, "query", user)
            got = ours.hit(f"query/{user}", item.amount, item.get_expiry())
            assert got.allowed == expected_allowed
            assert got.remaining == expected.remaining
            assert got.reset_at == pytest.approx(expected.reset_time, abs=1e-6)
    finally:
        storage.timer.cancel()


def test_the_previous_window_weighs_as_much_as_it_still_overlaps() -> None:
    clock = Clock(600.0)  # the start of a minute
    counters = SlidingWindowCounters(clock)
    for _ in range(10):
        assert counters.hit("k", 10, 60).allowed
    assert not counters.hit("k", 10, 60).allowed
    clock.now = 660.0 + 30  # halfway through the next minute: the ten weigh as five
    hits = [counters.hit("k", 10, 60) for _ in range(6)]
    assert [hit.allowed for hit in hits] == [True] * 5 + [False]
    assert hits[4].remaining == 0


def test_stale_records_are_dropped_once_their_windows_have_passed() -> None:
    clock = Clock(0.0)
    counters = SlidingWindowCounters(clock)
    for user in range(1000):
        counters.hit(f"query/{user}", 10, 60)
    assert len(counters) == 1000
    clock.now = 200.0  # two windows later: nothing of theirs counts any more
    counters.hit("query/new", 10, 60)
    assert len(counters) == 1
