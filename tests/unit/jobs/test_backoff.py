"""Backoff: exponential ceilings, capped, with jitter that stays within its bounds."""

from __future__ import annotations

import random

import pytest

from upload_service.jobs.queue import Backoff


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(1, 5.0), (2, 10.0), (3, 20.0), (6, 160.0), (7, 300.0), (50, 300.0)]
)
def test_ceiling_doubles_per_attempt_up_to_the_cap(attempts: int, ceiling: float) -> None:
    assert Backoff(base_s=5.0, cap_s=300.0).ceiling_s(attempts) == ceiling


def test_delays_stay_within_half_the_ceiling_and_the_ceiling() -> None:
    backoff = Backoff(base_s=2.0, cap_s=60.0)
    rng = random.Random(7)
    for attempts in range(1, 12):
        ceiling = backoff.ceiling_s(attempts)
        delays = [backoff.delay_s(attempts, rng) for _ in range(500)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling


def test_jitter_spreads_retries_that_failed_together() -> None:
    backoff = Backoff(base_s=10.0, cap_s=10.0)
    rng = random.Random(1)
    delays = [backoff.delay_s(1, rng) for _ in range(1000)]
    assert max(delays) - min(delays) > 4.0  # most of the [5, 10] window is used
    assert len({round(delay, 3) for delay in delays}) > 900


def test_a_huge_attempt_count_does_not_overflow() -> None:
    assert Backoff(base_s=1.0, cap_s=30.0).delay_s(10_000) <= 30.0


def test_the_first_retry_waits_at_least_half_the_base() -> None:
    backoff = Backoff(base_s=4.0, cap_s=100.0)
    assert backoff.delay_s(1, random.Random(0)) >= 2.0
    assert backoff.delay_s(0, random.Random(0)) <= 4.0  # attempt counts below 1 act as 1


def test_a_wait_for_a_dependency_grows_with_the_time_already_waited() -> None:
    backoff = Backoff(base_s=5.0, cap_s=300.0)
    rng = random.Random(3)
    assert 2.5 <= backoff.wait_s(0, rng) <= 5.0  # the first: as after a first attempt
    assert 30.0 <= backoff.wait_s(60, rng) <= 60.0  # about as long again as it has waited
    assert 150.0 <= backoff.wait_s(86_000, rng) <= 300.0  # never more than 5 minutes apart


def test_a_wait_the_dependency_asked_for_is_honoured_within_the_cap() -> None:
    backoff = Backoff(base_s=5.0, cap_s=300.0)
    assert backoff.wait_s(0, asked_s=42) == 42
    assert backoff.wait_s(0, asked_s=3600) == 300
    assert 2.5 <= backoff.wait_s(0, asked_s=0) <= 5.0  # "now" is no reason to hammer it
