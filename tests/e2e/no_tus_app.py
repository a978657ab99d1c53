"""The service as a deployment from before tus: the same app, with nothing at `/v1/uploads/tus`.

Served by uvicorn's `--factory` in a test process. Requests for the tus endpoint meet what a
router without that route answers (a plain 404); everything else, the lifespan included, is the
service itself.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.api.tus import PREFIX
from upload_service.main import create_app


def app() -> ASGIApp:
    """The app from the environment's settings, without the tus door."""
    service = create_app()
    not_found = PlainTextResponse("Not Found", status_code=404)

    async def older(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and (path == PREFIX or path.startswith(f"{PREFIX}/")):
            await not_found(scope, receive, send)
            return
        await service(scope, receive, send)

    return older
