"""Which database failures mean "the database is unavailable", turned into one domain error.

Every path that talks to the database (the read pool, request sessions, the upload's own
transactions) maps through here, so a database that is down, unreachable, refusing connections,
or whose pool stayed exhausted past its timeout is a 503 `SERVICE_UNAVAILABLE` with
`Retry-After` on every route, never a 500. A statement that is wrong stays an error of its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from upload_service.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # Refused, reset, TimeoutError (connect and asyncpg's acquire timeout) included.
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    OperationalError,
    InterfaceError,
    PoolTimeout,  # SQLAlchemy's pool stayed exhausted for its whole `pool_timeout`.
)


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached, rather than a statement failed."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, UNREACHABLE)


def unavailable(exc: BaseException, doing: str) -> DatabaseUnavailable:
    """The 503 for `exc`, logged once without the driver's message (it may hold the DSN)."""
    logger.warning("%s failed: database unavailable (%s)", doing, type(exc).__name__)
    return DatabaseUnavailable()


@asynccontextmanager
async def database_required(doing: str) -> AsyncIterator[None]:
    """Run a block that needs the database; an outage inside it raises `DatabaseUnavailable`."""
    try:
        yield
    except Exception as exc:
        if is_unreachable(exc):
            raise unavailable(exc, doing) from None
        raise
