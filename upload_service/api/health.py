"""Kubernetes probes: liveness touches nothing; readiness checks the dependencies."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from upload_service.dependencies import ResourcesDep
from upload_service.observability.clock import utc_now
from upload_service.observability.probes import Check, check_readiness

router = APIRouter(include_in_schema=False)


async def health(_request: Request) -> Response:
    """Alive while the process runs."""
    body = b'{"status":"alive","timestamp":"%s"}' % utc_now().encode()
    return Response(body, media_type="application/json")


# A plain Starlette route, added to the app itself: the kubelet calls it every few seconds and
# it has nothing to inject, validate or serialise, so FastAPI's request handling (dependency
# solving, response validation) and the included routers' matching would be all of its cost.
liveness = Route("/health", health, methods=["GET"], include_in_schema=False)


@router.get("/readiness")
async def readiness(resources: ResourcesDep) -> JSONResponse:
    """Ready to take traffic: 503 when a required dependency fails or shutdown has begun."""
    if resources.shutting_down:
        return JSONResponse(
            {"status": "shutting_down", "checks": {}, "timestamp": utc_now()}, status_code=503
        )
    assert resources.engine is not None
    assert resources.storage is not None
    limits = resources.rate_limits
    extra: dict[str, Check] | None = (
        {"redis": limits.check} if limits is not None and limits.uses_redis else None
    )
    result = await check_readiness(
        engine=resources.engine,
        storage=resources.storage,
        classifier=resources.classifier,
        timeout_s=resources.settings.readiness_timeout_s,
        requires_classifier=resources.settings.readiness_requires_classifier,
        extra=extra,
        schema=resources.schema,
    )
    body = {"status": result.status, "checks": result.checks, "timestamp": utc_now()}
    return JSONResponse(body, status_code=503 if result.status == "not_ready" else 200)
