"""Builds every long-lived resource once, publishes it on `app.state`, closes it in reverse.

Each resource is opened on one `AsyncExitStack`, so a failure half-way through start-up closes
exactly what was already built, in reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.classifier import create_classifier
from upload_service.classifier.base import Classifier
from upload_service.config import Settings
from upload_service.db.migrate import SchemaState, upgrade_to_head
from upload_service.db.reads import Reader, open_reader
from upload_service.db.session import ConnectionShares, create_engine, create_session_factory
from upload_service.documents.doors.tus.running_checks import RunningChecks
from upload_service.edge.auth import TokenVerifier
from upload_service.edge.rate_limits import RateLimits
from upload_service.events.hub import StreamHub
from upload_service.events.outbox import EVENTS_CHANNEL, JOBS_CHANNEL
from upload_service.events.stream_slots import create_stream_slots
from upload_service.events.wakeups import Wakeups, create_wakeups
from upload_service.jobs.worker import Worker
from upload_service.page.assets import WebAssets, load_web_assets
from upload_service.runtime.allocator import map_large_buffers
from upload_service.runtime.termination import on_termination
from upload_service.storage.base import Storage
from upload_service.storage.budget import BufferBudget
from upload_service.storage.direct import DirectUploads
from upload_service.storage.local import LocalStorage
from upload_service.storage.s3 import S3Storage
from upload_service.storage.s3_direct import S3DirectUploads

logger = logging.getLogger("upload_service.lifespan")
# Below gunicorn's graceful_timeout, so jobs are handed back before the worker is killed.
WORKER_STOP_TIMEOUT_S = 10.0


@dataclass
class Resources:
    """What the lifespan built; `closed` records teardown order (the start-up test reads it)."""

    settings: Settings
    engine: AsyncEngine | None = None
    schema: SchemaState | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    reader: Reader | None = None
    http: httpx.AsyncClient | None = None
    storage: Storage | None = None
    # Only with S3 and DIRECT_UPLOADS on; None otherwise (and the routes do not exist).
    direct: DirectUploads | None = None
    classifier: Classifier | None = None
    verifier: TokenVerifier | None = None
    rate_limits: RateLimits | None = None
    # The running checks of the tus uploads this process serves (one per process, in memory).
    tus_checks: RunningChecks = field(default_factory=RunningChecks)
    wakeups: Wakeups | None = None
    hub: StreamHub | None = None
    # The built web page, or None when it has not been built (`/` then says how).
    web_assets: WebAssets | None = None
    shutting_down: bool = False
    closed: list[str] = field(default_factory=list)


def build_storage(settings: Settings) -> Storage:
    """The configured storage backend, its upload buffers bounded by one budget."""
    budget = BufferBudget.from_settings(settings)
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None  # Settings validation guarantees it.
        return S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            budget=budget,
        )
    # Created now, so a root that cannot exist stops start-up instead of the first upload.
    settings.local_storage_dir.mkdir(parents=True, exist_ok=True)
    return LocalStorage(settings.local_storage_dir, budget)


def build_direct_uploads(settings: Settings, storage: Storage) -> DirectUploads | None:
    """Direct uploads on the S3 storage, signed for the endpoint clients reach; else None."""
    if not settings.direct_uploads_enabled or not isinstance(storage, S3Storage):
        return None
    return S3DirectUploads(
        storage,
        settings.s3_public_endpoint_url or settings.s3_endpoint_url,
        settings.s3_region,
    )


@asynccontextmanager
async def open_resources(
    settings: Settings,
    into: Resources | None = None,
    *,
    wake_channels: tuple[str, ...] = (EVENTS_CHANNEL, JOBS_CHANNEL),
) -> AsyncIterator[Resources]:
    """Open the resources in order; on exit or on a failed start, close them in reverse.

    `wake_channels` are those this process listens to: event streams' and workers'.
    """
    res = into if into is not None else Resources(settings=settings)
    async with AsyncExitStack() as stack:

        def on_close(name: str, close: Callable[[], Awaitable[object]]) -> None:
            async def run() -> None:
                await close()
                res.closed.append(name)

            stack.push_async_callback(run)

        if settings.is_sqlite:
            # The embedded default migrates itself, however the app is started (`serve`,
            # uvicorn, --reload, gunicorn); PostgreSQL waits for `upload-service migrate`.
            await asyncio.to_thread(upgrade_to_head, settings.database_url)
        # Every pool together stays within DB_MAX_CONNECTIONS (README, "Database connections").
        shares = ConnectionShares.of(settings.db_max_connections, listener=not settings.is_sqlite)
        res.engine = create_engine(
            settings.database_url, pool_size=shares.writes, pooler=settings.behind_pooler
        )
        on_close("database", res.engine.dispose)
        res.schema = SchemaState(res.engine, at_head=settings.is_sqlite)
        res.sessions = create_session_factory(res.engine)
        res.reader = await open_reader(
            settings.database_url,
            pool_size=shares.reads,
            writers=res.engine,
            pooler=settings.behind_pooler,
        )
        on_close("database reader", res.reader.close)

        res.wakeups = create_wakeups(res.engine, settings.listen_url, wake_channels)
        # Started now, but connects in the background: start-up must not need the database.
        await res.wakeups.start()
        on_close("wakeups", res.wakeups.aclose)

        res.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )
        on_close("http", res.http.aclose)

        res.storage = build_storage(settings)
        on_close("storage", res.storage.aclose)
        res.direct = build_direct_uploads(settings, res.storage)

        res.classifier = create_classifier(
            settings.classifier_target, settings.classifier_timeout_s
        )
        on_close("classifier", res.classifier.aclose)

        res.verifier = TokenVerifier(settings, res.http)

        res.web_assets = load_web_assets(
            settings.web_assets_dir,
            dev_sign_in=settings.dev_sign_in_enabled,
            # The same switch that mounts `/v1/uploads/direct` (main.py).
            direct_uploads=settings.direct_uploads_enabled,
        )
        if res.web_assets is None:
            logger.warning("the web page is not built: `/` answers 503 until `make web` runs")

        res.rate_limits = RateLimits(settings)
        on_close("rate_limits", res.rate_limits.aclose)
        yield res


def _in_process_worker(resources: Resources) -> Worker:
    assert resources.sessions is not None
    assert resources.storage is not None
    assert resources.classifier is not None
    assert resources.http is not None
    return Worker(
        resources.sessions,
        resources.storage,
        resources.classifier,
        resources.http,
        resources.settings,
        wakeups=resources.wakeups,
    )


async def start_when_schema_at_head(resources: Resources, worker: Worker) -> None:
    """Start `worker` once the database's schema is at head: at once, unless a migration is
    due, in which case it waits quietly for `upload-service migrate` rather than failing every
    poll on tables that are not there yet."""
    assert resources.schema is not None
    await resources.schema.wait_at_head()
    await worker.start()


async def stop_worker(worker: Worker, starting: asyncio.Task[None], timeout_s: float) -> None:
    """Stop a worker started by `start_when_schema_at_head`, whether or not it started."""
    starting.cancel()
    with suppress(asyncio.CancelledError):
        await starting
    await worker.stop(timeout_s)


async def _look_at_schema(schema: SchemaState, timeout_s: float) -> None:
    # So a schema behind head is logged at start-up; start-up does not need the database.
    with suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await schema.check()


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The FastAPI lifespan bound to `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            loop = asyncio.get_running_loop()
            assert resources.wakeups is not None
            assert resources.engine is not None
            # Counted in the database on PostgreSQL, so the cap holds across every process and
            # replica; in memory on SQLite (one process).
            slots = create_stream_slots(
                resources.engine,
                settings.events_max_streams,
                lease_s=settings.events_stream_lease_s,
                pooler=settings.behind_pooler,
            )
            hub = resources.hub = StreamHub(resources.wakeups, slots)

            def begin_shutdown() -> None:
                # Readiness turns 503 now, while the server drains in-flight requests; event
                # streams end now, or they would hold the drain up until its timeout.
                resources.shutting_down = True
                loop.call_soon_threadsafe(hub.close)
                loop.call_soon_threadsafe(logger.warning, "termination signal: draining")

            assert resources.schema is not None
            await _look_at_schema(resources.schema, settings.readiness_timeout_s)
            worker = _in_process_worker(resources) if settings.worker_enabled else None
            starting = (
                asyncio.create_task(start_when_schema_at_head(resources, worker))
                if worker is not None
                else None
            )
            map_large_buffers()
            # Everything built so far lives as long as the process: move it out of the
            # collector's sight, so a full collection scans only what requests allocate.
            gc.collect()
            gc.freeze()
            try:
                with on_termination(begin_shutdown):
                    yield
            finally:
                # An app built again in the same process (tests, reload) must not find this
                # one's objects still out of the collector's reach.
                gc.unfreeze()
                resources.shutting_down = True
                hub.close()
                # Every stream's slot at once, while the database engine is still open.
                await slots.aclose()
                if worker is not None and starting is not None:
                    # Before the resources close: finish or hand back what it holds.
                    await stop_worker(worker, starting, WORKER_STOP_TIMEOUT_S)

    return lifespan
