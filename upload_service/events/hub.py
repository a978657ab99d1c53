"""The streams one process holds, by owner: who to wake when an owner's document changes.

The hub is woken by `Wakeups` (a `NOTIFY` from whichever process committed the change, or
this process's own commit on SQLite) and wakes the streams of that owner; each stream then
re-reads the outbox after its last event. Each stream holds a slot of its owner's
`EVENTS_MAX_STREAMS`, counted across processes by `StreamSlots`; the hub ends every stream at
once when the process begins to shut down.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from upload_service.db.owner_locks import owner_key
from upload_service.events.outbox import EVENTS_CHANNEL
from upload_service.events.stream_slots import StreamSlot, StreamSlots
from upload_service.events.wakeups import Wakeups


class Subscription:
    """One open stream: set when its owner may have new events."""

    __slots__ = ("owner", "slot", "woken")

    def __init__(self, slot: StreamSlot) -> None:
        self.owner = slot.owner
        self.slot = slot
        self.woken = asyncio.Event()


class StreamHub:
    """The process's open event streams, woken by owner."""

    def __init__(self, wakeups: Wakeups, slots: StreamSlots) -> None:
        self._by_key: dict[int, set[Subscription]] = defaultdict(set)
        self._slots = slots
        self.closing = asyncio.Event()
        """Set when the process begins to shut down: every stream ends."""
        self._unlisten: list[Callable[[], None]] = [
            wakeups.listen(EVENTS_CHANNEL, self._woken),
            wakeups.on_reconnect(self._wake_all),
        ]

    @property
    def open_streams(self) -> int:
        """Streams open in this process."""
        return sum(len(subscriptions) for subscriptions in self._by_key.values())

    async def subscribe(self, owner: str) -> Subscription:
        """A subscription for one stream, to `release` when it ends; `TooManyStreams` past
        the cap."""
        subscription = Subscription(await self._slots.take(owner))
        self._by_key[owner_key(owner)].add(subscription)
        return subscription

    async def release(self, subscription: Subscription) -> None:
        """The stream of `subscription` ended (once per subscription)."""
        key = owner_key(subscription.owner)
        if subscription not in self._by_key.get(key, ()):
            return
        self._by_key[key].discard(subscription)
        if not self._by_key[key]:
            del self._by_key[key]
        await self._slots.give_back(subscription.slot)

    def close(self) -> None:
        """End every stream now (shutdown), and refuse to wake any more."""
        self.closing.set()
        self._slots.drain()
        for unlisten in self._unlisten:
            unlisten()

    def _woken(self, payload: str) -> None:
        try:
            key = int(payload)
        except ValueError:
            return
        for subscription in self._by_key.get(key, ()):
            subscription.woken.set()

    def _wake_all(self) -> None:
        for subscriptions in self._by_key.values():
            for subscription in subscriptions:
                subscription.woken.set()
