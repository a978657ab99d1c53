"""Builds the application; nothing else happens here."""

from __future__ import annotations

import sys

from fastapi import FastAPI

import upload_service
from upload_service.api import (
    dev_token,
    direct_uploads,
    documents,
    events,
    health,
    internal,
    metrics,
    page,
    processing,
    tus,
)
from upload_service.api.openapi import TITLE, install_openapi, route_operation_id
from upload_service.config import ConfigurationError, Settings, get_settings
from upload_service.exception_handlers import install_exception_handlers
from upload_service.lifespan import lifespan_for
from upload_service.middleware.stack import middleware_stack
from upload_service.observability.logging_setup import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (from the environment when omitted)."""
    settings = settings or get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)
    app = FastAPI(
        title=TITLE,
        version=upload_service.__version__,
        # operationIds are the route functions' names, so generated clients read well.
        generate_unique_id_function=route_operation_id,
        lifespan=lifespan_for(settings),
        middleware=middleware_stack(settings),
        # /docs and /redoc come from `api/page.py`, their scripts served here, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_exception_handlers(app)
    install_openapi(app)
    app.router.routes.append(health.liveness)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(documents.router)
    if settings.direct_uploads_enabled:
        # With local storage, or turned off, the routes do not exist: 404 NOT_FOUND.
        app.include_router(direct_uploads.router)
    app.include_router(processing.router)
    app.include_router(tus.router)
    app.include_router(events.router)
    app.include_router(internal.router)
    app.include_router(page.router)
    if settings.dev_sign_in_enabled:
        app.include_router(dev_token.router)
    return app


def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except ConfigurationError as exc:
        # One line naming the variable, then exit: no traceback through the server's importer.
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# What `uvicorn upload_service.main:app` and gunicorn load; settings come from the environment.
app = _app_from_environment()
