"""What every step of a direct upload works with, built per request from the app's resources."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.storage.base import Storage
from upload_service.storage.direct import DirectUploads


@dataclass(frozen=True, slots=True)
class DirectDoor:
    """The database, the store (its plain and its direct-upload calls) and the settings."""

    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    direct: DirectUploads
    settings: Settings
