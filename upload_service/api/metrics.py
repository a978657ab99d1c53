"""Prometheus scrape endpoint: not in the public document, no token (as the probes)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from upload_service.dependencies import ResourcesDep
from upload_service.observability import metrics

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def scrape_metrics(resources: ResourcesDep) -> Response:
    """Every series in Prometheus text format, all worker processes added up."""
    # No jobs table to count while the schema waits for its migration.
    schema_ready = resources.schema is not None and resources.schema.at_head
    depth = (
        await metrics.read_queue_depth(resources.engine)
        if resources.engine and schema_ready
        else None
    )
    # Reading every worker's files is file I/O: keep it off the event loop.
    body = await asyncio.to_thread(metrics.render, depth)
    return Response(body, media_type=metrics.CONTENT_TYPE)
