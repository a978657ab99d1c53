"""SQLAlchemy 2 models: documents, jobs (exposed to clients as tasks) and idempotency keys."""

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
