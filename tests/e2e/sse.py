"""A small Server-Sent Events reader for the tests: events as they arrive, each wait bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str
    data: Any


class EventReader:
    """Parses an open `text/event-stream` response; comments are counted, not returned."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.comments = 0
        self.ended = False

    async def next(self, timeout_s: float) -> Event | None:
        """The next event within `timeout_s`; None if the stream ended first."""
        async with asyncio.timeout(timeout_s):
            fields: dict[str, str] = {}
            async for line in self._lines:
                if line == "":
                    if "event" in fields or "data" in fields:
                        data = json.loads(fields["data"]) if "data" in fields else None
                        return Event(fields.get("id"), fields.get("event", "message"), data)
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            self.ended = True
            return None

    async def quiet_for(self, seconds: float) -> bool:
        """True when no event arrives for `seconds` (heartbeats do not count)."""
        try:
            event = await self.next(seconds)
        except TimeoutError:
            return True
        return event is None
