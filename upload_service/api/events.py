"""Events: the caller's document changes as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header

from upload_service.api.event_stream import EventStreamResponse
from upload_service.dependencies import DbReader, HubDep, QueryCaller, SettingsDep
from upload_service.events.stream import event_stream, starting_point

router = APIRouter(tags=["events"])

EVENT_STREAM_EXAMPLE = (
    "retry: 1000\n\n"
    "id: 42\nevent: document.updated\n"
    'data: {"doc_id": "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0", "status": "complete", ...}\n\n'
    ": heartbeat\n\n"
)
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stream: `document.updated` with the document, `document.deleted` "
        'with `{"doc_id"}`, `reset` when `Last-Event-ID` is too old to replay',
        "content": {
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": EVENT_STREAM_EXAMPLE,
            }
        },
    }
}


@router.get(
    "/v1/events",
    operation_id="stream_events",
    summary="Stream the caller's document changes (Server-Sent Events)",
    response_class=EventStreamResponse,
    # EventStreamResponse takes no status_code: FastAPI needs it named to document the route.
    status_code=200,
    responses=STREAM_RESPONSES,
)
async def stream_events(
    user: QueryCaller,
    reader: DbReader,
    hub: HubDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventStreamResponse:
    """Each change of one of the caller's documents as it commits, from any replica or worker.

    `Last-Event-ID` replays what was missed within `EVENTS_RETENTION_S`; beyond that the stream
    starts with `event: reset` (re-read the list). A comment line comes at least every 15 s. At
    most `EVENTS_MAX_STREAMS` open streams per user (429 `TOO_MANY_STREAMS`).
    """
    subscription = await hub.subscribe(user.sub)
    try:
        # After subscribing: a change committed meanwhile wakes the stream at once.
        start = await starting_point(
            reader, user.sub, last_event_id, retention_s=settings.events_retention_s
        )
    except BaseException:
        await hub.release(subscription)
        raise
    frames = event_stream(
        reader,
        subscription,
        start,
        heartbeat_s=settings.events_heartbeat_s,
        closing=hub.closing,
    )
    return EventStreamResponse(
        frames, closing=hub.closing, release=lambda: hub.release(subscription)
    )
