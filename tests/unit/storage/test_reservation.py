"""Reservations: a buffer pays for what it holds, in steps while small, then for a whole buffer.

The budgets here are the service's smallest: 16 MiB shared by buffers of 8 MiB (two S3 parts).
"""

from __future__ import annotations

import asyncio

import pytest

from upload_service.errors import ServerBusy
from upload_service.storage.budget import STEP_BYTES, STEPPED_UP_TO, BufferBudget, Reservation

MIB = 1024 * 1024
WHOLE = 8 * MIB
CAPACITY = 16 * MIB


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_small_buffer_holds_a_step_not_a_whole_buffer() -> None:
    budget = BufferBudget(CAPACITY)
    reservation = Reservation(budget, WHOLE)

    await reservation.cover(10)

    assert reservation.held == STEP_BYTES
    assert budget.capacity - budget.available == STEP_BYTES


async def test_a_growing_buffer_takes_steps_then_a_whole_buffer() -> None:
    budget = BufferBudget(CAPACITY)
    reservation = Reservation(budget, WHOLE)

    await reservation.cover(STEP_BYTES + 1)
    assert reservation.held == 2 * STEP_BYTES
    await reservation.cover(STEPPED_UP_TO)
    assert reservation.held == STEPPED_UP_TO
    assert budget.stepped == STEPPED_UP_TO

    await reservation.cover(STEPPED_UP_TO + 1)
    assert reservation.held == WHOLE
    assert budget.stepped == 0
    assert budget.capacity - budget.available == WHOLE


async def test_after_a_buffer_is_handed_over_the_next_one_is_whole_at_once() -> None:
    budget = BufferBudget(CAPACITY)
    reservation = Reservation(budget, WHOLE)
    await reservation.cover(WHOLE)

    sent = reservation.take()
    await reservation.cover(10)

    assert reservation.held == WHOLE
    sent.release()
    sent.release()  # a second release gives nothing back twice
    reservation.release()
    assert budget.available == CAPACITY


async def test_steps_leave_room_for_a_whole_buffer_and_later_ones_wait_for_it() -> None:
    budget = BufferBudget(CAPACITY)
    small = [Reservation(budget, WHOLE) for _ in range(CAPACITY // STEPPED_UP_TO)]
    fits = (CAPACITY - WHOLE) // STEPPED_UP_TO
    for reservation in small[:fits]:
        await reservation.cover(STEPPED_UP_TO)

    late = asyncio.create_task(small[fits].cover(10))
    await settle()
    assert not late.done()  # the last whole buffer's room is not for steps...

    big = Reservation(budget, WHOLE)
    await asyncio.wait_for(big.cover(WHOLE), timeout=1)  # ...but for a whole buffer
    small[0].release()
    await asyncio.wait_for(late, timeout=1)
    assert small[fits].held == STEP_BYTES


async def test_a_buffer_refused_a_step_asks_for_a_whole_buffer_instead_of_waiting() -> None:
    budget = BufferBudget(CAPACITY)
    others = [Reservation(budget, WHOLE) for _ in range((CAPACITY - WHOLE) // STEPPED_UP_TO)]
    for other in others[:-1]:
        await other.cover(STEPPED_UP_TO)
    growing = others[-1]
    await growing.cover(STEPPED_UP_TO - STEP_BYTES)
    blocker = Reservation(budget, WHOLE)
    await blocker.cover(STEP_BYTES)  # the steps are now all taken

    await asyncio.wait_for(growing.cover(STEPPED_UP_TO), timeout=1)

    assert growing.held == WHOLE


async def test_many_small_buffers_growing_at_once_never_deadlock() -> None:
    budget = BufferBudget(CAPACITY)
    finished = 0

    async def upload(chunks: int) -> None:
        nonlocal finished
        reservation = Reservation(budget, WHOLE)
        filled = 0
        for _ in range(chunks):
            filled += STEP_BYTES
            if filled > WHOLE:  # the buffer is sent; its share comes back
                reservation.release()
                filled = STEP_BYTES
            await reservation.cover(filled)
            await asyncio.sleep(0)
        reservation.release()
        finished += 1

    # 40 uploads of 3 MiB each, all past their steps at about the same moment.
    await asyncio.wait_for(asyncio.gather(*(upload(48) for _ in range(40))), timeout=10)

    assert finished == 40
    assert budget.available == CAPACITY
    assert budget.stepped == 0


async def test_a_budget_with_no_room_beside_a_whole_buffer_pays_whole_buffers() -> None:
    budget = BufferBudget(WHOLE)
    reservation = Reservation(budget, WHOLE)

    await reservation.cover(10)

    assert reservation.held == WHOLE


async def test_a_step_waiting_longer_than_max_wait_is_server_busy() -> None:
    budget = BufferBudget(CAPACITY, max_wait_s=0.05)
    await budget.acquire(CAPACITY)

    with pytest.raises(ServerBusy):
        await asyncio.wait_for(Reservation(budget, WHOLE).cover(10), timeout=2)

    assert budget.waiting == 0
