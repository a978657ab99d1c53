"""Builds every long-lived resource once, publishes it on `app.state`, closes it in reverse.

Each resource is opened on one `AsyncExitStack`, so a failure half-way through start-up closes
exactly what was already built, in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.auth import TokenVerifier
from upload_service.classifier import create_classifier
from upload_service.classifier.base import Classifier
from upload_service.config import Settings
from upload_service.db.session import create_engine, create_session_factory
from upload_service.storage.base import Storage
from upload_service.storage.budget import BufferBudget
from upload_service.storage.local import LocalStorage
from upload_service.storage.s3 import S3Storage

logger = logging.getLogger("upload_service.lifespan")


@dataclass
class Resources:
    """What the lifespan built; `closed` records teardown order (the start-up test reads it)."""

    settings: Settings
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    http: httpx.AsyncClient | None = None
    storage: Storage | None = None
    classifier: Classifier | None = None
    verifier: TokenVerifier | None = None
    shutting_down: bool = False
    closed: list[str] = field(default_factory=list)


def build_storage(settings: Settings) -> Storage:
    """The configured storage backend."""
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None  # Settings validation guarantees it.
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            budget=BufferBudget(settings.upload_buffer_budget_bytes),
        )
    # Created now, so a root that cannot exist stops start-up instead of the first upload.
    settings.local_storage_dir.mkdir(parents=True, exist_ok=True)
    return LocalStorage(settings.local_storage_dir)


@asynccontextmanager
async def open_resources(
    settings: Settings, into: Resources | None = None
) -> AsyncIterator[Resources]:
    """Open the resources in order; on exit or on a failed start, close them in reverse."""
    res = into if into is not None else Resources(settings=settings)
    async with AsyncExitStack() as stack:

        def on_close(name: str, close: Callable[[], Awaitable[object]]) -> None:
            async def run() -> None:
                await close()
                res.closed.append(name)

            stack.push_async_callback(run)

        res.engine = create_engine(settings.database_url)
        on_close("database", res.engine.dispose)
        res.sessions = create_session_factory(res.engine)

        res.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )
        on_close("http", res.http.aclose)

        res.storage = build_storage(settings)
        on_close("storage", res.storage.aclose)

        res.classifier = create_classifier(
            settings.classifier_target, settings.classifier_timeout_s
        )
        on_close("classifier", res.classifier.aclose)

        res.verifier = TokenVerifier(settings)
        yield res


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The FastAPI lifespan bound to `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            yield
            resources.shutting_down = True

    return lifespan
