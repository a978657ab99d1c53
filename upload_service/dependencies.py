"""The `Depends()` providers: how routes receive the resources the lifespan built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.auth import Principal, TokenVerifier
from upload_service.config import Settings
from upload_service.errors import Forbidden, Unauthenticated
from upload_service.lifespan import Resources
from upload_service.storage.base import Storage


def get_resources(request: Request) -> Resources:
    """Everything the lifespan built."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_settings(resources: ResourcesDep) -> Settings:
    """The settings the app was built with."""
    return resources.settings


def get_storage(resources: ResourcesDep) -> Storage:
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


def get_current_user(request: Request, resources: ResourcesDep) -> Principal:
    """The verified caller, from the `Authorization: Bearer` header."""
    header = request.headers.get("authorization")
    if header is None or header[:7].lower() != "bearer ":
        raise Unauthenticated(token_sent=header is not None)
    verifier: TokenVerifier | None = resources.verifier
    assert verifier is not None
    return verifier.verify(header[7:].strip())


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
# scope="function": commit before the response is sent, so a 2xx means the data is durable.
DbSession = Annotated[AsyncSession, Depends(get_db, scope="function")]
CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only callers whose token carries `scope`."""

    def check(user: CurrentUser) -> Principal:
        if scope not in user.scopes:
            raise Forbidden(f"This route requires the '{scope}' scope")
        return user

    return check


def get_session_factory(resources: ResourcesDep) -> async_sessionmaker[AsyncSession]:
    """The session factory, for services that open short transactions of their own."""
    assert resources.sessions is not None
    return resources.sessions


SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_session_factory)]
