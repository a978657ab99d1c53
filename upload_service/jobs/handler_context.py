"""What every job handler works with: its context, the effects it returns, a permanent failure.

A handler does its slow work (storage, classifier, HTTP) outside any transaction and returns its
database effects as a function; the worker applies them in the same transaction that records the
job's success, and only while it still holds the job's lease, so a job whose lease was lost
leaves no trace. Effects that are `Batched` are applied together with the others of their kind in
the same transaction, in a statement or two for the whole batch instead of a few per job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from upload_service.classifier.base import Classifier
from upload_service.config import Settings
from upload_service.jobs.leases import ClaimedJob
from upload_service.storage.base import Storage

Effects = Callable[[AsyncConnection], Awaitable[None]]
"""Database writes that commit together with the job's outcome."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batched(Generic[T]):
    """Effects that `apply` writes for many jobs at once: one job's `item` among its batch's.

    Called alone it applies its own item; the worker instead hands every item of one `apply`
    in a batch to a single call.
    """

    apply: Callable[[AsyncConnection, Sequence[T]], Awaitable[None]]
    item: T

    async def __call__(self, conn: AsyncConnection) -> None:
        await self.apply(conn, [self.item])


async def apply_effects(conn: AsyncConnection, effects: Sequence[Effects]) -> None:
    """Apply several jobs' effects in `conn`'s transaction: each `Batched` kind in one call."""
    batches: dict[Callable[[AsyncConnection, Sequence[Any]], Awaitable[None]], list[Any]] = {}
    for effect in effects:
        if isinstance(effect, Batched):
            batches.setdefault(effect.apply, []).append(effect.item)
        else:
            await effect(conn)
    for apply, items in batches.items():
        await apply(conn, items)


class PermanentJobError(Exception):
    """A failure that retrying cannot fix: the job fails at once, whatever attempts remain."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The document a classify job works on, as read when the job was claimed."""

    doc_id: str
    owner: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """The resources handlers work with, all built by the lifespan (or the worker process)."""

    engine: AsyncEngine
    storage: Storage
    classifier: Classifier
    http: httpx.AsyncClient
    settings: Settings
    subjects: dict[str, Subject | None] = field(default_factory=dict)
    """Documents of claimed classify jobs by job id, read in the claim's transaction."""


Handler = Callable[[HandlerContext, ClaimedJob], Awaitable[Effects | None]]
