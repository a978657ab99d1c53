"""The client's body: read as it arrives, cut off when a read waits `idle_timeout_s` in silence."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.types import Message, Receive

from upload_service.documents.client_body import ClientBody
from upload_service.errors import ClientDisconnected, UploadTimeout

IDLE_S = 0.2


def client_sending(*messages: Message, then_silence: bool = False) -> Receive:
    """An ASGI `receive` that hands out `messages`, then (optionally) never answers again."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        assert then_silence, "read past the end of the body"
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def chunk(data: bytes, *, more: bool = True) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_the_chunks_arrive_in_order_and_the_body_ends() -> None:
    body = ClientBody(client_sending(chunk(b"ab"), chunk(b"cd"), chunk(b"", more=False)), IDLE_S)

    assert [piece async for piece in body] == [b"ab", b"cd", b""]


async def test_a_client_silent_for_the_idle_timeout_is_cut_off() -> None:
    body = ClientBody(client_sending(chunk(b"ab"), then_silence=True), IDLE_S)
    started = time.monotonic()

    with pytest.raises(UploadTimeout):
        async with asyncio.timeout(5):
            await _read_all(body)

    assert IDLE_S <= time.monotonic() - started < IDLE_S + 1
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0  # nothing left pending


async def test_time_the_server_spends_between_reads_is_not_the_clients_silence() -> None:
    messages = [chunk(b"x") for _ in range(3)] + [chunk(b"", more=False)]
    body = ClientBody(client_sending(*messages), IDLE_S)

    received: list[bytes] = []
    async for piece in body:
        received.append(piece)
        await asyncio.sleep(2 * IDLE_S)  # waiting for budget, say: the client is not idle

    assert received == [b"x", b"x", b"x", b""]


async def test_a_body_read_to_its_end_is_watched_no_longer() -> None:
    body = ClientBody(client_sending(chunk(b"ab", more=False)), IDLE_S)
    assert [piece async for piece in body] == [b"ab"]

    await asyncio.sleep(3 * IDLE_S)  # would be cancelled here if the watchdog were still armed


async def test_a_client_that_disconnects_is_client_disconnected() -> None:
    body = ClientBody(client_sending(chunk(b"ab"), {"type": "http.disconnect"}), IDLE_S)

    with pytest.raises(ClientDisconnected):
        await _read_all(body)


async def _read_all(body: ClientBody) -> list[bytes]:
    return [piece async for piece in body]
