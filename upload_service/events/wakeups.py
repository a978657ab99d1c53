"""Wake-ups between processes: PostgreSQL `LISTEN/NOTIFY`, or the process's own commits on SQLite.

Whoever waits (a job worker for new jobs, an event stream for its owner's changes) registers a
callback on a channel; the writer's transaction sends the wake-up at commit (`outbox.py`). A
wake-up carries no data that matters: the callback re-reads the database, so a wake-up lost
with a dropped connection costs only time, and every reconnection calls the `on_reconnect`
callbacks, which re-read as if woken.

PostgreSQL: one connection of its own per process, outside the pools and never through
PgBouncer (`LISTEN` needs a session of its own, which a transaction pooler does not give):
`DATABASE_LISTEN_URL`, or `DATABASE_URL` when unset. It is re-established with backoff when
it drops, and checked every `_HEALTH_CHECK_S` so a silently dead one is noticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import asyncpg
from sqlalchemy import event, make_url
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

from upload_service.events.outbox import PENDING_WAKEUPS

logger = logging.getLogger(__name__)

Callback = Callable[[str], None]
"""Called with the wake-up's payload, in the event loop."""

_HEALTH_CHECK_S = 30.0
_MAX_RECONNECT_PAUSE_S = 5.0


class Wakeups(Protocol):
    """Where waiters register for the wake-ups of a channel."""

    def listen(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` on each wake-up of `channel` until the returned function is called."""
        ...

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` whenever wake-ups may have been missed (a connection came back)."""
        ...

    async def start(self) -> None:
        """Begin delivering wake-ups."""
        ...

    async def aclose(self) -> None:
        """Stop delivering wake-ups and close what they use."""
        ...


class _Registry:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._reconnects: list[Callable[[], None]] = []

    def listen(self, channel: str, callback: Callback) -> Callable[[], None]:
        self._callbacks[channel].append(callback)
        return lambda: _discard(self._callbacks[channel], callback)

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._reconnects.append(callback)
        return lambda: _discard(self._reconnects, callback)

    def deliver(self, channel: str, payload: str) -> None:
        for callback in list(self._callbacks.get(channel, ())):
            try:
                callback(payload)
            except Exception:
                logger.exception("a wake-up callback of %s failed", channel)

    def reconnected(self) -> None:
        for callback in list(self._reconnects):
            try:
                callback()
            except Exception:
                logger.exception("a reconnection callback failed")


def _discard(callbacks: list[Any], callback: object) -> None:
    with suppress(ValueError):
        callbacks.remove(callback)


class LocalWakeups(_Registry):
    """SQLite, one process: a committed connection's wake-ups are delivered as it is checked in.

    The check-in comes after the commit has returned, so a waiter re-reading finds the change;
    a rollback drops the connection's wake-ups.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._engine = engine

    async def start(self) -> None:
        event.listen(self._engine.sync_engine, "rollback", self._drop)
        event.listen(self._engine.sync_engine.pool, "checkin", self._checked_in)

    async def aclose(self) -> None:
        with suppress(Exception):
            event.remove(self._engine.sync_engine, "rollback", self._drop)
            event.remove(self._engine.sync_engine.pool, "checkin", self._checked_in)

    def _drop(self, connection: Any) -> None:
        connection.info.pop(PENDING_WAKEUPS, None)

    def _checked_in(self, _dbapi: object, record: ConnectionPoolEntry) -> None:
        pending: set[tuple[str, str]] | None = record.info.pop(PENDING_WAKEUPS, None)
        for channel, payload in sorted(pending or ()):
            self.deliver(channel, payload)


class PgWakeups(_Registry):
    """PostgreSQL: `LISTEN` on a connection of its own, re-established whenever it drops."""

    def __init__(self, listen_url: str, channels: tuple[str, ...]) -> None:
        super().__init__()
        self._url = listen_url
        self._channels = channels
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        """Set while the listening connection is up (tests and readiness may look)."""

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="listen-notify")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen_until_lost()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning("listening connection lost (%s); reconnecting", type(exc).__name__)
            self.connected.clear()
            await asyncio.sleep(min(_MAX_RECONNECT_PAUSE_S, 0.1 * 2**failures))

    async def _listen_until_lost(self) -> None:
        connection = await _connect(self._url)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        try:
            for channel in self._channels:
                await connection.add_listener(channel, self._notified)
            self.connected.set()
            # Anything committed while we were not listening is found by re-reading.
            self.reconnected()
            while not lost.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), _HEALTH_CHECK_S)
                if not lost.is_set():
                    # A connection that died silently (no FIN) is noticed here.
                    await connection.execute("SELECT 1", timeout=5)
            raise ConnectionError("listening connection closed")
        finally:
            with suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)
            connection.terminate()

    def _notified(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self.deliver(channel, str(payload))


async def _connect(url: str) -> asyncpg.Connection:
    # The same host, credentials and URL options as SQLAlchemy's engine would use.
    _, options = asyncpg_dialect().create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    for dialect_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        options.pop(dialect_only, None)
    return await asyncpg.connect(**options, timeout=5)


def create_wakeups(engine: AsyncEngine, listen_url: str, channels: tuple[str, ...]) -> Wakeups:
    """`LISTEN` on `listen_url` for PostgreSQL, or the engine's own commits for SQLite."""
    if engine.dialect.name == "postgresql":
        return PgWakeups(listen_url, channels)
    return LocalWakeups(engine)
