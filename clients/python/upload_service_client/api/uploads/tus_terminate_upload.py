from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.validation_error_body import ValidationErrorBody
from ...types import Response


def _get_kwargs(
    upload_id: str,
    *,
    tus_resumable: str,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    headers["Tus-Resumable"] = tus_resumable

    _kwargs: dict[str, Any] = {
        "method": "delete",
        "url": "/v1/uploads/tus/{upload_id}".format(
            upload_id=quote(str(upload_id), safe=""),
        ),
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorBody | ValidationErrorBody | None:
    if response.status_code == 204:
        response_204 = cast(Any, None)
        return response_204

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = ErrorBody.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = ErrorBody.from_dict(response.json())

        return response_409

    if response.status_code == 410:
        response_410 = ErrorBody.from_dict(response.json())

        return response_410

    if response.status_code == 412:
        response_412 = ErrorBody.from_dict(response.json())

        return response_412

    if response.status_code == 422:
        response_422 = ValidationErrorBody.from_dict(response.json())

        return response_422

    if response.status_code == 423:
        response_423 = ErrorBody.from_dict(response.json())

        return response_423

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
) -> Response[Any | ErrorBody | ValidationErrorBody]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ValidationErrorBody]:
    """Terminate a resumable upload (tus termination)

     Remove the upload and its bytes; it answers 410 from then on.

    Args:
        upload_id (str):
        tus_resumable (str): The protocol version: `1.0.0`

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        upload_id=upload_id,
        tus_resumable=tus_resumable,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    tus_resumable: str,
) -> Any | ErrorBody | ValidationErrorBody | None:
    """Terminate a resumable upload (tus termination)

     Remove the upload and its bytes; it answers 410 from then on.

    Args:
        upload_id (str):
        tus_resumable (str): The protocol version: `1.0.0`

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ValidationErrorBody
    """

    return sync_detailed(
        upload_id=upload_id,
        client=client,
        tus_resumable=tus_resumable,
    ).parsed


async def asyncio_detailed(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ValidationErrorBody]:
    """Terminate a resumable upload (tus termination)

     Remove the upload and its bytes; it answers 410 from then on.

    Args:
        upload_id (str):
        tus_resumable (str): The protocol version: `1.0.0`

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        upload_id=upload_id,
        tus_resumable=tus_resumable,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    tus_resumable: str,
) -> Any | ErrorBody | ValidationErrorBody | None:
    """Terminate a resumable upload (tus termination)

     Remove the upload and its bytes; it answers 410 from then on.

    Args:
        upload_id (str):
        tus_resumable (str): The protocol version: `1.0.0`

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ValidationErrorBody
    """

    return (
        await asyncio_detailed(
            upload_id=upload_id,
            client=client,
            tus_resumable=tus_resumable,
        )
    ).parsed
