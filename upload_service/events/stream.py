"""One caller's event stream: where it starts (`Last-Event-ID`), then each event as it commits.

Events are read from the outbox after the last one sent, the caller's own only; a wake-up from
the hub, or a heartbeat's timer, prompts the next read. Reads are pages of `PAGE` events, and
a page is written out before the next is read, so a client that stops reading holds the stream
at its socket's buffer (the server's writes wait) instead of growing a queue here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, select

from upload_service.db.models import utcnow
from upload_service.db.reads import Reader
from upload_service.events.hub import Subscription
from upload_service.events.outbox import EVENTS

PAGE = 100
RECONNECT_DELAY_MS = 1000
_e = EVENTS.c
_AFTER = (
    select(_e.id, _e.event, _e.data)
    .where(_e.owner == bindparam("owner"), _e.id > bindparam("after"))
    .order_by(_e.id)
    .limit(PAGE)
)
_OWNER_LAST = select(func.max(_e.id).label("id")).where(_e.owner == bindparam("owner"))
_LAST = select(func.max(_e.id).label("id"))
_OLDEST_KEPT = (
    select(_e.id).where(_e.created_at >= bindparam("cutoff")).order_by(_e.created_at).limit(1)
)


@dataclass(frozen=True, slots=True)
class Start:
    """Where a stream starts: after event `after`, told first to `reset` when it cannot replay."""

    after: int
    reset: bool


async def starting_point(
    reader: Reader, owner: str, last_event_id: str | None, *, retention_s: float
) -> Start:
    """After `Last-Event-ID` when every event since is within retention; else now, with a reset.

    Without `Last-Event-ID` the stream starts with the owner's next event. An id that is not
    one of ours, from the future, or followed by events older than `EVENTS_RETENTION_S` (which
    the janitor forgets) starts it with `reset`. An id after which nothing happened replays
    nothing, however old: the caller missed nothing.
    """
    owner_last = await _scalar(reader, _OWNER_LAST, {"owner": owner})
    if last_event_id is None:
        return Start(after=owner_last, reset=False)
    last = await _scalar(reader, _LAST, {})
    cutoff = utcnow() - timedelta(seconds=retention_s)
    oldest_row = await reader.one(_OLDEST_KEPT, {"cutoff": cutoff})
    # With nothing kept, the next event to come is the oldest one kept.
    oldest_kept = int(oldest_row["id"]) if oldest_row is not None else last + 1
    asked = last_event_id.strip()
    if asked.isdigit() and oldest_kept - 1 <= int(asked) <= last:
        return Start(after=int(asked), reset=False)
    # The reset's own id replays from here next time, whatever this owner did meanwhile.
    return Start(after=max(owner_last, oldest_kept - 1), reset=True)


async def _scalar(reader: Reader, query: Any, params: Mapping[str, Any]) -> int:
    row = await reader.one(query, params)
    return int(row["id"]) if row is not None and row["id"] is not None else 0


def frame(event_id: int | None, event: str, data: Mapping[str, Any]) -> bytes:
    """One Server-Sent Event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


HEARTBEAT = b": heartbeat\n\n"


async def event_stream(
    reader: Reader,
    subscription: Subscription,
    start: Start,
    *,
    heartbeat_s: float,
    closing: asyncio.Event,
) -> AsyncIterator[bytes]:
    """The stream's bytes: the retry hint, a reset if due, then events and heartbeats.

    Subscribe before computing `start`, so nothing committed in between goes unnoticed.
    Ends when `closing` is set.
    """
    yield f"retry: {RECONNECT_DELAY_MS}\n\n".encode()
    after = start.after
    if start.reset:
        yield frame(after, "reset", {})
    owner = subscription.owner
    while not closing.is_set():
        # Cleared before reading: a change committed after this line wakes the next wait.
        subscription.woken.clear()
        rows = await reader.all(_AFTER, {"owner": owner, "after": after})
        for row in rows:
            after = int(row["id"])
            yield frame(after, str(row["event"]), row["data"])
        if len(rows) == PAGE:
            continue
        if not await _wait(subscription.woken, closing, heartbeat_s):
            yield HEARTBEAT


async def _wait(woken: asyncio.Event, closing: asyncio.Event, timeout_s: float) -> bool:
    """Wait for a wake-up or the shutdown for up to `timeout_s`; False when it timed out."""
    waits = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(closing.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        for waiting in waits:
            waiting.cancel()
            with suppress(asyncio.CancelledError):
                await waiting
    return bool(done)
