"""SIGTERM turns readiness 503 the moment it arrives, and the server's own handler still runs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.fixtures.app import MakeSettings, running_app
from upload_service.main import create_app
from upload_service.runtime.termination import on_termination


@pytest.fixture
def server_handler() -> Iterator[list[int]]:
    """Stand in for uvicorn's SIGTERM handler: record the signals it receives."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_sigterm_turns_readiness_503_at_once_and_reaches_the_server(
    make_settings: MakeSettings, server_handler: list[int]
) -> None:
    async with running_app(create_app(make_settings())) as client:
        assert (await client.get("/readiness")).status_code == 200
        signal.raise_signal(signal.SIGTERM)
        response = await client.get("/readiness")
        assert response.status_code == 503
        assert response.json()["status"] == "shutting_down"
        # Liveness is unaffected: the process is alive while it drains.
        assert (await client.get("/health")).status_code == 200
    assert server_handler == [signal.SIGTERM]


def test_leaving_restores_the_previous_handler(server_handler: list[int]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    calls: list[str] = []
    with on_termination(lambda: calls.append("noticed")):
        assert signal.getsignal(signal.SIGTERM) is not before
        signal.raise_signal(signal.SIGTERM)
    assert calls == ["noticed"]
    assert server_handler == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before
