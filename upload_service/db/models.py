"""SQLAlchemy 2 models: documents, jobs (exposed to clients as tasks), idempotency keys,
resumable (tus) and direct uploads, document events and the leases of open event streams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from ulid import ULID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_doc_id() -> str:
    """`doc_` + a ULID: time-sortable, so id order is creation order."""
    return f"doc_{ULID()}"


def new_task_id() -> str:
    """`task_` + a ULID."""
    return f"task_{ULID()}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both PostgreSQL and SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        # Listing is "the owner's documents, newest first"; ids are ULIDs, so id order is time.
        Index("ix_documents_owner_id", "owner", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_doc_id)
    owner: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    classification: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    correlation_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Job(Base):
    """A durable unit of background work; clients see classify jobs as tasks."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim query: queued jobs that are due, oldest first.
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_doc_id_kind", "doc_id", "kind"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_task_id)
    kind: Mapped[str] = mapped_column(String(32))
    doc_id: Mapped[str | None] = mapped_column(String(40), default=None)
    owner: Mapped[str | None] = mapped_column(String(255), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Since when the job has been waiting for a dependency (classifier, webhook receiver) that
    # was unavailable; those waits do not count as attempts, for up to JOB_RETRY_WINDOW_S.
    unavailable_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    correlation_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# How long an `Idempotency-Key` replays its document; older keys are ignored, then purged.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)


class IdempotencyKey(Base):
    """One row per (owner, key): the unique key is what makes concurrent duplicates collapse."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    doc_id: Mapped[str] = mapped_column(String(40), ForeignKey("documents.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    """A resumable (tus) upload: its progress here, its bytes in storage's partial objects.

    The offset moves only after the bytes below it are durable, and only by the request that
    holds the lease (`locked_by` until `locked_until`), with a compare-and-set on the offset.
    """

    __tablename__ = "uploads"
    __table_args__ = (
        # The per-user cap counts an owner's unfinished uploads.
        Index("ix_uploads_owner_state", "owner", "state"),
        # The janitor looks for unfinished uploads past their expiry.
        Index("ix_uploads_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # `Upload-Metadata` exactly as the client sent it (HEAD answers it back).
    upload_metadata: Mapped[str | None] = mapped_column("metadata", Text, default=None)
    filename: Mapped[str] = mapped_column(String(255))
    doc_id: Mapped[str] = mapped_column(String(40))
    storage_key: Mapped[str] = mapped_column(String(255))
    # The storage's own state of the partial object (`storage/partial.py`), JSON.
    storage_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # open → finishing (every byte saved, the document not yet recorded) → done;
    # or terminated (DELETE, a wrong type) or expired (the janitor).
    state: Mapped[str] = mapped_column(String(16), default="open")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# A direct upload's URLs die at `expires_at`; a part sent just before may still be arriving, so
# the upload is live (completable) this much longer, then the janitor removes it.
DIRECT_UPLOAD_GRACE = timedelta(minutes=15)
# How long one `complete` holds an upload while it verifies; a crashed one lets go after this.
DIRECT_COMPLETE_LEASE = timedelta(minutes=10)


def new_direct_upload_id() -> str:
    """`dup_` + a ULID."""
    return f"dup_{ULID()}"


class DirectUpload(Base):
    """An upload the client sends straight to S3: what it declared, where, and how it ended.

    `state`: `pending` (bytes may be arriving), `completing` (one `complete` holds it until
    `lease_until`), then `completed`, `rejected`, `cancelled` or `expired`.
    """

    __tablename__ = "direct_uploads"
    __table_args__ = (
        # The janitor's question: unfinished uploads past their expiry.
        Index("ix_direct_uploads_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_direct_upload_id)
    owner: Mapped[str] = mapped_column(String(255))
    # Chosen at the start, so a repeated `complete` can only ever make this one document.
    doc_id: Mapped[str] = mapped_column(String(40), default=new_doc_id)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    storage_key: Mapped[str] = mapped_column(String(255))
    # The S3 multipart upload's id; None for a single presigned POST.
    multipart_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    part_size: Mapped[int] = mapped_column(BigInteger)
    part_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Why it was refused: the error code its `complete` answered.
    outcome: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DocumentEvent(Base):
    """The outbox: one row per change of a document, written in the change's own transaction.

    Ids grow with commit order for each owner (writers take the owner's lock before the id is
    drawn, `events/outbox.py`), so a stream that has seen id N of its owner has seen all before.
    """

    __tablename__ = "document_events"
    __table_args__ = (
        # A stream reads "the owner's events after N"; retention purges by age.
        Index("ix_document_events_owner_id", "owner", "id"),
        Index("ix_document_events_created_at", "created_at"),
    )

    # BIGINT on PostgreSQL; SQLite only makes an INTEGER PRIMARY KEY its rowid (autoincrement).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    owner: Mapped[str] = mapped_column(String(255))
    doc_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventStreamLease(Base):
    """One open event stream, held by one process until `expires_at` (`events/stream_slots.py`).

    Counted per owner against `EVENTS_MAX_STREAMS` across every process sharing the database;
    the holder renews all its rows at once, so a SIGKILLed process's rows simply expire.
    """

    __tablename__ = "event_stream_leases"
    __table_args__ = (
        # Opening counts the owner's rows; renewing and closing touch the holder's. Nothing
        # indexes `expires_at`, so a renewal (which changes only it) can be a HOT update.
        Index("ix_event_stream_leases_owner", "owner"),
        Index("ix_event_stream_leases_holder", "holder"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    # The holding process (host, pid and a random part: a restarted pid is a new holder).
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
