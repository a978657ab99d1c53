"""The `Depends()` providers: how routes receive the resources the lifespan built.

Every provider is `async def`, even where it only reads an attribute: FastAPI runs a plain
`def` dependency in its threadpool, a thread hop per request for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from upload_service.auth import Principal, TokenVerifier
from upload_service.config import Settings
from upload_service.errors import Forbidden, RateLimited, Unauthenticated
from upload_service.lifespan import Resources
from upload_service.middleware.access_log import USER_ID_STATE_KEY
from upload_service.middleware.asgi import stamp_response
from upload_service.rate_limits import LimitKind, RateLimits
from upload_service.storage.base import Storage


async def get_resources(request: Request) -> Resources:
    """Everything the lifespan built."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    """The settings the app was built with."""
    return resources.settings


async def get_storage(resources: ResourcesDep) -> Storage:
    """The storage backend."""
    assert resources.storage is not None
    return resources.storage


async def get_db(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """A session per request: committed when the route succeeds, rolled back when it raises."""
    assert resources.sessions is not None
    async with resources.sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


async def get_reader(resources: ResourcesDep) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit mode for routes that only read (one statement, no BEGIN)."""
    assert resources.reader is not None
    async with resources.reader.connect() as connection:
        yield connection


async def get_current_user(request: Request, resources: ResourcesDep) -> Principal:
    """The verified caller, from the `Authorization: Bearer` header."""
    header = request.headers.get("authorization")
    if header is None or header[:7].lower() != "bearer ":
        raise Unauthenticated(token_sent=header is not None)
    verifier: TokenVerifier | None = resources.verifier
    assert verifier is not None
    principal = await verifier.verify(header[7:].strip())
    # The access log line names the caller.
    request.scope.setdefault("state", {})[USER_ID_STATE_KEY] = principal.sub
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
# scope="function": commit before the response is sent, so a 2xx means the data is durable.
DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]
DbReader = Annotated[AsyncConnection, Depends(get_reader, scope="function")]
CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only callers whose token carries `scope`."""

    async def check(user: CurrentUser) -> Principal:
        if scope not in user.scopes:
            raise Forbidden(f"This route requires the '{scope}' scope")
        return user

    return check


async def get_rate_limits(resources: ResourcesDep) -> RateLimits:
    """The per-user rate limits."""
    assert resources.rate_limits is not None
    return resources.rate_limits


RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]


def rate_limit(kind: LimitKind) -> Callable[[Request, Principal, RateLimits], Awaitable[None]]:
    """A dependency that counts the request against the caller's `kind` budget; 429 when spent."""

    async def enforce(request: Request, user: CurrentUser, limits: RateLimitsDep) -> None:
        outcome = await limits.hit(kind, user.sub)
        if outcome is None:
            return  # The storage is unreachable: serve without a limit (already logged).
        # On whatever response this request gets, success or error, even a route's own Response.
        headers = outcome.headers()
        stamp_response(request.scope, lambda: headers)
        if not outcome.allowed:
            raise RateLimited(outcome.retry_after_s)

    return enforce


# One callable per kind, so FastAPI's per-request cache counts a request once even when a
# router and a route both ask for the same limit.
UploadRateLimit = Depends(rate_limit("upload"))
QueryRateLimit = Depends(rate_limit("query"))


async def get_session_factory(resources: ResourcesDep) -> async_sessionmaker[AsyncSession]:
    """The session factory, for services that open short transactions of their own."""
    assert resources.sessions is not None
    return resources.sessions


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]
