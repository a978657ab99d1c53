"""The buffer budget: bytes are lent out while they last, then acquirers wait in line."""

from __future__ import annotations

import asyncio

import pytest

from upload_service.config import load_settings
from upload_service.errors import ServerBusy
from upload_service.storage.budget import BufferBudget

MIB = 1024 * 1024


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_acquire_within_the_budget_does_not_wait() -> None:
    budget = BufferBudget(10)

    await asyncio.wait_for(budget.acquire(4), timeout=1)
    await asyncio.wait_for(budget.acquire(6), timeout=1)

    assert budget.available == 0


async def test_acquire_waits_while_the_budget_is_spent_and_proceeds_on_release() -> None:
    budget = BufferBudget(10)
    await budget.acquire(8)

    waiter = asyncio.create_task(budget.acquire(5))
    await settle()
    assert not waiter.done()
    assert budget.waiting == 1

    budget.release(8)
    await asyncio.wait_for(waiter, timeout=1)
    assert budget.available == 5
    assert budget.waiting == 0


async def test_waiters_are_served_in_arrival_order_without_barging() -> None:
    budget = BufferBudget(10)
    await budget.acquire(10)
    granted: list[str] = []

    async def take(name: str, nbytes: int) -> None:
        await budget.acquire(nbytes)
        granted.append(name)

    big = asyncio.create_task(take("big", 8))
    await settle()
    small = asyncio.create_task(take("small", 2))
    await settle()

    budget.release(3)  # enough for the small one, not for the big one ahead of it
    await settle()
    assert granted == []

    budget.release(7)
    await asyncio.wait_for(asyncio.gather(big, small), timeout=1)
    assert granted == ["big", "small"]


async def test_a_cancelled_waiter_leaves_the_line_and_unblocks_those_behind() -> None:
    budget = BufferBudget(10)
    await budget.acquire(6)
    big = asyncio.create_task(budget.acquire(8))
    await settle()
    small = asyncio.create_task(budget.acquire(4))
    await settle()
    assert not small.done()

    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big

    await asyncio.wait_for(small, timeout=1)
    assert budget.available == 0
    assert budget.waiting == 0


async def test_a_waiter_cancelled_just_after_being_granted_gives_the_bytes_back() -> None:
    budget = BufferBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(10))
    await settle()

    budget.release(10)  # grants the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert budget.available == 10


async def test_reserve_returns_the_bytes_even_when_the_block_fails() -> None:
    budget = BufferBudget(10)
    seen_inside: list[int] = []

    async def fail_while_holding() -> None:
        async with budget.reserve(7):
            seen_inside.append(budget.available)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_while_holding()

    assert seen_inside == [3]

    assert budget.available == 10


async def test_asking_for_more_than_the_whole_budget_fails_at_once() -> None:
    budget = BufferBudget(10)

    with pytest.raises(ValueError, match="exceed"):
        await budget.acquire(11)


async def test_releasing_more_than_was_acquired_is_a_bug() -> None:
    budget = BufferBudget(10)
    await budget.acquire(4)

    with pytest.raises(RuntimeError, match="more bytes"):
        budget.release(5)


@pytest.mark.parametrize("nbytes", [0, -1])
async def test_acquire_and_release_take_positive_sizes(nbytes: int) -> None:
    budget = BufferBudget(10)

    with pytest.raises(ValueError, match="positive"):
        await budget.acquire(nbytes)
    with pytest.raises(ValueError, match="positive"):
        budget.release(nbytes)


def test_budget_is_built_from_upload_buffer_budget_mb() -> None:
    settings = load_settings(upload_buffer_budget_mb=32)

    assert BufferBudget.from_settings(settings).capacity == 32 * MIB
    assert BufferBudget.from_megabytes(16).capacity == 16 * MIB


async def test_a_wait_longer_than_max_wait_is_server_busy_and_leaves_the_line() -> None:
    budget = BufferBudget(10, max_wait_s=0.05)
    await budget.acquire(10)

    with pytest.raises(ServerBusy):
        await asyncio.wait_for(budget.acquire(5), timeout=2)

    assert budget.waiting == 0
    budget.release(10)
    assert budget.available == 10


async def test_a_wait_that_times_out_as_a_release_lands_is_still_server_busy() -> None:
    budget = BufferBudget(100, max_wait_s=0.05)
    await budget.acquire(100)
    waiter = asyncio.create_task(budget.acquire(60))
    await asyncio.sleep(0)  # It waits now, its timeout armed.
    # A part finishes sending in the same tick as the timeout: the release drops the cancelled
    # entry from the line before the waiter leaves it.
    asyncio.get_running_loop().call_later(0.05, budget.release, 10)

    with pytest.raises(ServerBusy):
        await asyncio.wait_for(waiter, timeout=2)

    assert budget.waiting == 0
    budget.release(90)
    assert budget.available == 100


def test_a_wait_is_bounded_by_the_upload_idle_timeout() -> None:
    settings = load_settings(upload_buffer_budget_mb=16, upload_idle_timeout_s=7)

    budget = BufferBudget.from_settings(settings)

    assert budget._max_wait_s == 7
