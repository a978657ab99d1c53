"""Builds the application; nothing else happens here."""

from __future__ import annotations

from fastapi import FastAPI

import upload_service
from upload_service.api import documents, health
from upload_service.config import Settings, get_settings
from upload_service.exception_handlers import install_exception_handlers
from upload_service.lifespan import lifespan_for
from upload_service.middleware.stack import middleware_stack


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (from the environment when omitted)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Upload Service API",
        version=upload_service.__version__,
        lifespan=lifespan_for(settings),
        middleware=middleware_stack(settings),
    )
    install_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(documents.router)
    return app


# What `uvicorn upload_service.main:app` and gunicorn load; settings come from the environment.
app = create_app()
