"""Fixtures of the job tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.jobs.support import WebhookReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A real webhook receiver on 127.0.0.1, answering 200 until told otherwise."""
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
