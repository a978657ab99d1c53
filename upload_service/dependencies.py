"""The `Depends()` providers: how routes receive the resources the lifespan built.

Every provider is `async def`, even where it only reads an attribute: FastAPI runs a plain
`def` dependency in its threadpool, a thread hop per request for nothing. Providers read the
resources from the app's state directly rather than through a `ResourcesDep` of their own:
each node of the dependency graph costs FastAPI a solve per request, and the hot reads would
otherwise pay for five of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.db.migrate import SchemaState
from upload_service.db.outage import is_unreachable, unavailable
from upload_service.db.reads import Reader
from upload_service.documents.doors.tus.context import TusContext
from upload_service.edge.auth import Principal
from upload_service.edge.rate_limits import LimitKind, RateLimits
from upload_service.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
    WebPageNotBuilt,
)
from upload_service.events.hub import StreamHub
from upload_service.lifespan import Resources
from upload_service.middleware.asgi import stamp_response
from upload_service.middleware.early_auth import PRINCIPAL_STATE_KEY
from upload_service.page.assets import WebAssets
from upload_service.storage.base import Storage
from upload_service.storage.direct import DirectUploads


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def _behind(resources: Resources) -> SchemaState | None:
    # The schema while it is behind head (PostgreSQL before `upload-service migrate`): routes
    # answer 503 rather than fail on tables that are not there yet. At head, None, for the cost
    # of an attribute read (no coroutine) on every request that uses the database.
    schema = resources.schema
    return schema if schema is not None and not schema.at_head else None


async def get_resources(request: Request) -> Resources:
    """Everything the lifespan built."""
    return _resources(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return _resources(request).settings


async def get_storage(request: Request) -> Storage:
    """The storage backend."""
    storage = _resources(request).storage
    assert storage is not None
    return storage


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request: committed when the route succeeds, rolled back when it raises.

    A database that is down, or a pool that stays exhausted, surfaces here whichever statement
    met it, and is answered as 503 `SERVICE_UNAVAILABLE` like a read's, not as a 500.
    """
    resources = _resources(request)
    if (behind := _behind(resources)) is not None:
        await behind.require()
    sessions = resources.sessions
    assert sessions is not None
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except Exception as exc:
            await _rollback_quietly(session)
            if is_unreachable(exc):
                raise unavailable(exc, f"{request.method} {request.url.path}") from None
            raise
        except BaseException:
            await _rollback_quietly(session)
            raise


async def _rollback_quietly(session: AsyncSession) -> None:
    # A connection the outage broke fails its rollback too; the original error is the news.
    try:
        await session.rollback()
    except Exception as exc:
        if not is_unreachable(exc):
            raise


async def get_reader(request: Request) -> Reader:
    """Single-statement reads without a transaction, for services that only read.

    Each read holds a connection for just its statement: a provider that yields a connection
    would hold it until the response is built, and costs FastAPI an exit stack.
    """
    resources = _resources(request)
    if (behind := _behind(resources)) is not None:
        await behind.require()
    reader = resources.reader
    assert reader is not None
    return reader


async def get_current_user(request: Request) -> Principal:
    """The caller early auth verified from the `Authorization: Bearer` header.

    Verified there, before any of the body was read; a request that reached a route without
    a verified caller (no early auth in front of it) is refused, never trusted.
    """
    principal: Principal | None = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    if principal is None:
        raise Unauthenticated()
    return principal


async def get_direct_uploads(request: Request) -> DirectUploads:
    """The store's direct-upload calls; 404 where there are none (local storage, turned off)."""
    direct = _resources(request).direct
    if direct is None:
        raise NotFound()
    return direct


async def get_hub(request: Request) -> StreamHub:
    """The process's open event streams."""
    hub = _resources(request).hub
    assert hub is not None
    return hub


async def get_web_assets(request: Request) -> WebAssets:
    """The built web page; 503 saying how to build it when it is not."""
    assets = _resources(request).web_assets
    if assets is None:
        raise WebPageNotBuilt()
    return assets


SettingsDep = Annotated[Settings, Depends(get_settings)]
DirectUploadsDep = Annotated[DirectUploads, Depends(get_direct_uploads)]
WebAssetsDep = Annotated[WebAssets, Depends(get_web_assets)]
HubDep = Annotated[StreamHub, Depends(get_hub)]
StorageDep = Annotated[Storage, Depends(get_storage)]
# scope="function": commit before the response is sent, so a 2xx means the data is durable.
DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]
DbReader = Annotated[Reader, Depends(get_reader)]
CurrentUser = Annotated[Principal, Depends(get_current_user)]


def authorize(kind: LimitKind) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the verified caller, counted against their `kind` budget; 429 when spent.

    One node for both, because every route that names a caller also spends a budget.
    """

    async def caller(request: Request) -> Principal:
        user = await get_current_user(request)
        limits: RateLimits | None = _resources(request).rate_limits
        assert limits is not None
        outcome = await limits.hit(kind, user.sub)
        if outcome is None:
            return user  # The storage is unreachable: serve without a limit (already logged).
        # On whatever response this request gets, success or error, even a route's own Response.
        headers = outcome.headers()
        stamp_response(request.scope, lambda: headers)
        if not outcome.allowed:
            raise RateLimited(outcome.retry_after_s)
        return user

    return caller


# One callable per kind, so FastAPI's per-request cache counts a request once even when a
# router and a route both ask for the same caller.
UploadCaller = Annotated[Principal, Depends(authorize("upload"))]
QueryCaller = Annotated[Principal, Depends(authorize("query"))]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only callers whose token carries `scope`."""

    async def check(user: QueryCaller) -> Principal:
        if scope not in user.scopes:
            raise Forbidden(f"This route requires the '{scope}' scope")
        return user

    return check


async def get_session_factory(request: Request) -> async_sessionmaker[AsyncSession]:
    """The session factory, for services that open short transactions of their own."""
    resources = _resources(request)
    if (behind := _behind(resources)) is not None:
        await behind.require()
    sessions = resources.sessions
    assert sessions is not None
    return sessions


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]


async def get_tus_context(request: Request) -> TusContext:
    """What the tus door works with: sessions, storage, settings, this process's running checks."""
    resources = _resources(request)
    if (behind := _behind(resources)) is not None:
        await behind.require()
    assert resources.sessions is not None
    assert resources.engine is not None
    assert resources.storage is not None
    return TusContext(
        resources.sessions,
        resources.engine,
        resources.storage,
        resources.settings,
        resources.tus_checks,
    )


TusContextDep = Annotated[TusContext, Depends(get_tus_context)]
