"""What every tus operation works with: the database, storage, settings and running checks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.documents.doors.tus.running_checks import RunningChecks
from upload_service.storage.base import Storage


@dataclass(frozen=True, slots=True)
class TusContext:
    """The resources of one tus request (built by the route from its dependencies)."""

    sessions: async_sessionmaker[AsyncSession]
    # The same database, for the PATCH's two statements run on the driver's connection.
    engine: AsyncEngine
    storage: Storage
    settings: Settings
    checks: RunningChecks
