"""Kubernetes probes: liveness touches nothing; readiness checks the dependencies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from upload_service.dependencies import ResourcesDep
from upload_service.probes import Check, check_readiness

router = APIRouter(include_in_schema=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.get("/health")
async def health() -> dict[str, Any]:
    """Alive while the process runs."""
    return {"status": "alive", "timestamp": _now()}


@router.get("/readiness")
async def readiness(resources: ResourcesDep) -> JSONResponse:
    """Ready to take traffic: 503 when a required dependency fails or shutdown has begun."""
    if resources.shutting_down:
        return JSONResponse(
            {"status": "shutting_down", "checks": {}, "timestamp": _now()}, status_code=503
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
    )
    body = {"status": result.status, "checks": result.checks, "timestamp": _now()}
    return JSONResponse(body, status_code=503 if result.status == "not_ready" else 200)
