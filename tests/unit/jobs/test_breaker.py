"""The classifier's circuit breaker: opens after consecutive outages, probes later and later,
closes when a probe passes."""

from __future__ import annotations

import asyncio

import pytest

from upload_service.jobs.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, probe_base_s=1.0, probe_cap_s=8.0, clock=clock)


def test_it_opens_after_threshold_unavailable_calls_in_a_row(breaker: CircuitBreaker) -> None:
    assert [breaker.record_unavailable() for _ in range(3)] == [False, False, True]
    assert breaker.is_open
    assert breaker.record_unavailable() is False  # already open: reported once


def test_an_answer_in_between_starts_the_count_over(breaker: CircuitBreaker) -> None:
    breaker.record_unavailable()
    breaker.record_unavailable()
    breaker.record_success()
    breaker.record_unavailable()
    breaker.record_unavailable()
    assert not breaker.is_open


def test_probes_come_later_and_later_up_to_the_cap(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.record_unavailable()
    delays = []
    for _ in range(6):
        delays.append(breaker.seconds_to_probe())
        breaker.probe_failed()
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    clock.now += 8.0
    assert breaker.seconds_to_probe() == 0.0


def test_a_passing_probe_closes_it(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.record_unavailable()
    breaker.probe_passed()
    assert not breaker.is_open
    assert breaker.seconds_to_probe() is None


def test_a_dependency_that_passes_probes_but_refuses_work_is_probed_less_often(
    breaker: CircuitBreaker,
) -> None:
    # Health SERVING, Classify RESOURCE_EXHAUSTED: each reopening waits longer.
    delays = []
    for _ in range(4):
        for _ in range(3):
            breaker.record_unavailable()
        delays.append(breaker.seconds_to_probe())
        breaker.probe_passed()
    assert delays == [1.0, 2.0, 4.0, 8.0]
    breaker.record_success()  # real work done: the delays start over
    for _ in range(3):
        breaker.record_unavailable()
    assert breaker.seconds_to_probe() == 1.0


def test_a_late_answer_does_not_close_an_open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.record_unavailable()
    breaker.record_success()  # a call that was in flight when it opened
    assert breaker.is_open  # only the probe closes it (and makes the held-back jobs due)


async def test_waiting_for_a_probe_returns_once_open_and_due() -> None:
    breaker = CircuitBreaker(threshold=1, probe_base_s=0.05, probe_cap_s=0.05)
    waiting = asyncio.create_task(breaker.wait_for_probe())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # closed: nothing to probe
    breaker.record_unavailable()
    await asyncio.wait_for(waiting, 2)


def test_it_knows_how_long_it_has_been_open(breaker: CircuitBreaker, clock: Clock) -> None:
    assert breaker.open_for_s == 0.0
    for _ in range(3):
        breaker.record_unavailable()
    clock.now += 7.5
    breaker.probe_failed()
    assert breaker.open_for_s == 7.5  # since it opened, not since the last probe
    breaker.probe_passed()
    assert breaker.open_for_s == 0.0
