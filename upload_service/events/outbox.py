"""Write document events into the outbox, in the transaction of the change they describe.

An event exists exactly when its change committed. Streams resume from an event id, so for each
owner ids must become visible in id order: a stream that has seen id 12 must never later find
an 11 that was still committing. Each writer therefore takes a transaction-scoped lock of the
owners it writes for *before* drawing ids; the lock is released only after the commit is visible,
so the next writer of that owner draws a larger id and commits later. Different owners never
wait for each other (most transactions touch one owner; a worker's batch takes its owners'
locks in sorted order, so two batches cannot deadlock on them).

On PostgreSQL the same statement sends `NOTIFY document_events, '<owner key>'`, delivered at
commit to every process listening (`wakeups.py`); on SQLite the process wakes itself when the
connection returns to the pool after the commit.

A transaction that changes many documents (a worker recording a batch of jobs) opens
`one_outbox_write`: its events and job wake-ups are collected and written when it ends, in one
statement, still the transaction's last write. The lock is then taken once per batch rather than
once per job, and each change costs no round trip of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from upload_service.db.models import Base, Document, utcnow
from upload_service.db.owner_locks import EVENTS_SPACE, owner_key

EVENTS: Table = Base.metadata.tables["document_events"]
EVENTS_CHANNEL = "document_events"
JOBS_CHANNEL = "upload_jobs"
PENDING_WAKEUPS = "upload_service.pending_wakeups"
"""Key in a connection's `info` of the (channel, payload) wake-ups a SQLite commit sends."""
_COLLECTED = "upload_service.collected_outbox"
"""Key in a connection's `info` of the writes `one_outbox_write` holds back until its end."""

UPDATED = "document.updated"
DELETED = "document.deleted"

# One round trip on PostgreSQL: the owners' locks (and their wake-ups, and the workers' when the
# same transaction queued a job) in a CTE that must yield its one row before any event row exists,
# so every id is drawn under the locks.
_LOCK_NOTIFY_INSERT = text(
    """
    WITH locked AS MATERIALIZED (
        SELECT count(pg_advisory_xact_lock(:space, k)) + count(pg_notify(:channel, k::text))
            + (SELECT count(pg_notify(:jobs_channel, ''))
               FROM generate_series(1, CAST(:wake_jobs AS integer))) AS n
        FROM unnest(CAST(:keys AS integer[])) AS k
    )
    INSERT INTO document_events (owner, doc_id, event, data, created_at)
    SELECT e.owner, e.doc_id, e.event, CAST(e.data AS json), CAST(:created_at AS timestamptz)
    FROM locked, unnest(
        CAST(:owners AS text[]), CAST(:doc_ids AS text[]),
        CAST(:events AS text[]), CAST(:datas AS text[])
    ) WITH ORDINALITY AS e(owner, doc_id, event, data, n)
    ORDER BY e.n
    """
)
_NOTIFY = text("SELECT pg_notify(:channel, '')")
_INSERT = insert(EVENTS).values(
    owner=bindparam("owner"),
    doc_id=bindparam("doc_id"),
    event=bindparam("event"),
    data=bindparam("data"),
    created_at=bindparam("created_at"),
)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def document_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A document row as `GET /v1/documents/{doc_id}` shows it (a unit test holds them equal)."""
    return {
        "doc_id": row["id"],
        "status": row["status"],
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "storage_key": row["storage_key"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "classification": row["classification"] or None,
        "error": row["error"] or None,
    }


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """One event to record: what happened to which owner's document, and its data."""

    owner: str
    doc_id: str
    event: str
    data: dict[str, Any]

    @classmethod
    def updated(cls, row: Mapping[Any, Any]) -> DocumentChange:
        """The document as it now is (`row` has every column of `documents`)."""
        return cls(row["owner"], row["id"], UPDATED, document_json(row))

    @classmethod
    def of(cls, document: Document) -> DocumentChange:
        """An ORM document as it now is (flushed, so its defaults are filled in)."""
        columns = Base.metadata.tables["documents"].columns.keys()
        return cls.updated({column: getattr(document, column) for column in columns})

    @classmethod
    def deleted(cls, owner: str, doc_id: str) -> DocumentChange:
        """The document is gone."""
        return cls(owner, doc_id, DELETED, {"doc_id": doc_id})


@dataclass(slots=True)
class _Collected:
    changes: list[DocumentChange] = field(default_factory=list)
    wake_workers: bool = False


@asynccontextmanager
async def one_outbox_write(conn: AsyncConnection) -> AsyncIterator[None]:
    """Hold back `conn`'s events and job wake-ups, and write them all in one statement at the end.

    Open it around a transaction's writes and let it close before the commit: the statement it
    sends is then the transaction's last write, as `record_events` requires. Nothing is written
    if the block raises (the transaction is rolled back anyway).
    """
    if _COLLECTED in conn.info:
        raise RuntimeError("one_outbox_write is already open on this connection")
    collected = _Collected()
    # `info` belongs to the pooled connection, not this checkout: it must not outlive the block.
    conn.info[_COLLECTED] = collected
    try:
        yield
    finally:
        # Suppressed: a connection lost in the block may refuse even this, and the block's own
        # error is the one to see (a lost connection's record starts afresh anyway).
        with suppress(Exception):
            conn.info.pop(_COLLECTED, None)
    await _write(conn, collected.changes, wake_jobs=collected.wake_workers)


async def record_events(conn: AsyncConnection, changes: Sequence[DocumentChange]) -> None:
    """Add `changes` to the outbox in `conn`'s transaction, and wake their streams at commit.

    Call it as the transaction's last write: the owners' locks are held from here to the commit.
    Inside `one_outbox_write` the events are written when that block ends.
    """
    collected: _Collected | None = conn.info.get(_COLLECTED)
    if collected is not None:
        collected.changes.extend(changes)
        return
    await _write(conn, changes, wake_jobs=False)


async def _write(
    conn: AsyncConnection, changes: Sequence[DocumentChange], *, wake_jobs: bool
) -> None:
    if not changes:
        if wake_jobs:
            await _wake_workers_now(conn)
        return
    keys = sorted({owner_key(change.owner) for change in changes})
    now = utcnow()
    if conn.dialect.name == "postgresql":
        await conn.execute(
            _LOCK_NOTIFY_INSERT,
            {
                "space": EVENTS_SPACE,
                "channel": EVENTS_CHANNEL,
                "jobs_channel": JOBS_CHANNEL,
                "wake_jobs": 1 if wake_jobs else 0,
                "keys": keys,
                "owners": [change.owner for change in changes],
                "doc_ids": [change.doc_id for change in changes],
                "events": [change.event for change in changes],
                "datas": [json.dumps(change.data, separators=(",", ":")) for change in changes],
                "created_at": now,
            },
        )
        return
    # SQLite has one writer at a time: ids are drawn in commit order already.
    _stage_local(conn, [(EVENTS_CHANNEL, str(key)) for key in keys])
    if wake_jobs:
        _stage_local(conn, [(JOBS_CHANNEL, "")])
    await conn.execute(
        _INSERT,
        [
            {
                "owner": change.owner,
                "doc_id": change.doc_id,
                "event": change.event,
                "data": change.data,
                "created_at": now,
            }
            for change in changes
        ],
    )


async def wake_workers(conn: AsyncConnection) -> None:
    """Wake the job workers when `conn`'s transaction commits (a job was queued).

    Inside `one_outbox_write` the wake-up rides on that block's statement.
    """
    collected: _Collected | None = conn.info.get(_COLLECTED)
    if collected is not None:
        collected.wake_workers = True
        return
    await _wake_workers_now(conn)


async def _wake_workers_now(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY, {"channel": JOBS_CHANNEL})
    else:
        _stage_local(conn, [(JOBS_CHANNEL, "")])


def _stage_local(conn: AsyncConnection, wakeups: list[tuple[str, str]]) -> None:
    # Sent by `LocalWakeups` when the connection goes back to the pool after its commit.
    pending: set[tuple[str, str]] = conn.info.setdefault(PENDING_WAKEUPS, set())
    pending.update(wakeups)
