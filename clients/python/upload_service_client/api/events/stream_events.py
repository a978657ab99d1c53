from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.validation_error_body import ValidationErrorBody
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    last_event_id: None | str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(last_event_id, Unset):
        headers["Last-Event-ID"] = last_event_id

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/events",
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorBody | ValidationErrorBody | str | None:
    if response.status_code == 200:
        response_200 = response.text
        return response_200

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 422:
        response_422 = ValidationErrorBody.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ErrorBody.from_dict(response.json())

        return response_429

    if response.status_code == 500:
        response_500 = ErrorBody.from_dict(response.json())

        return response_500

    if response.status_code == 503:
        response_503 = ErrorBody.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorBody | ValidationErrorBody | str]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    last_event_id: None | str | Unset = UNSET,
) -> Response[ErrorBody | ValidationErrorBody | str]:
    """Stream the caller's document changes (Server-Sent Events)

     Each change of one of the caller's documents as it commits, from any replica or worker.

    `Last-Event-ID` replays what was missed within `EVENTS_RETENTION_S`; beyond that the stream
    starts with `event: reset` (re-read the list). A comment line comes at least every 15 s. At
    most `EVENTS_MAX_STREAMS` open streams per user (429 `TOO_MANY_STREAMS`).

    Args:
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | ValidationErrorBody | str]
    """

    kwargs = _get_kwargs(
        last_event_id=last_event_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    last_event_id: None | str | Unset = UNSET,
) -> ErrorBody | ValidationErrorBody | str | None:
    """Stream the caller's document changes (Server-Sent Events)

     Each change of one of the caller's documents as it commits, from any replica or worker.

    `Last-Event-ID` replays what was missed within `EVENTS_RETENTION_S`; beyond that the stream
    starts with `event: reset` (re-read the list). A comment line comes at least every 15 s. At
    most `EVENTS_MAX_STREAMS` open streams per user (429 `TOO_MANY_STREAMS`).

    Args:
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | ValidationErrorBody | str
    """

    return sync_detailed(
        client=client,
        last_event_id=last_event_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    last_event_id: None | str | Unset = UNSET,
) -> Response[ErrorBody | ValidationErrorBody | str]:
    """Stream the caller's document changes (Server-Sent Events)

     Each change of one of the caller's documents as it commits, from any replica or worker.

    `Last-Event-ID` replays what was missed within `EVENTS_RETENTION_S`; beyond that the stream
    starts with `event: reset` (re-read the list). A comment line comes at least every 15 s. At
    most `EVENTS_MAX_STREAMS` open streams per user (429 `TOO_MANY_STREAMS`).

    Args:
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorBody | ValidationErrorBody | str]
    """

    kwargs = _get_kwargs(
        last_event_id=last_event_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    last_event_id: None | str | Unset = UNSET,
) -> ErrorBody | ValidationErrorBody | str | None:
    """Stream the caller's document changes (Server-Sent Events)

     Each change of one of the caller's documents as it commits, from any replica or worker.

    `Last-Event-ID` replays what was missed within `EVENTS_RETENTION_S`; beyond that the stream
    starts with `event: reset` (re-read the list). A comment line comes at least every 15 s. At
    most `EVENTS_MAX_STREAMS` open streams per user (429 `TOO_MANY_STREAMS`).

    Args:
        last_event_id (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorBody | ValidationErrorBody | str
    """

    return (
        await asyncio_detailed(
            client=client,
            last_event_id=last_event_id,
        )
    ).parsed
