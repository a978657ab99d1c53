from http import HTTPStatus
from typing import Any, cast

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.validation_error_body import ValidationErrorBody
from ...types import UNSET, File, Response, Unset


def _get_kwargs(
    *,
    body: File | Unset = UNSET,
    upload_length: None | str | Unset = UNSET,
    upload_metadata: None | str | Unset = UNSET,
    upload_defer_length: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(upload_length, Unset):
        headers["Upload-Length"] = upload_length

    if not isinstance(upload_metadata, Unset):
        headers["Upload-Metadata"] = upload_metadata

    if not isinstance(upload_defer_length, Unset):
        headers["Upload-Defer-Length"] = upload_defer_length

    if not isinstance(upload_checksum, Unset):
        headers["Upload-Checksum"] = upload_checksum

    headers["Tus-Resumable"] = tus_resumable

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/uploads/tus",
    }

    if not isinstance(body, Unset):
        _kwargs["content"] = body.payload
    headers["Content-Type"] = "application/offset+octet-stream"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    if response.status_code == 201:
        response_201 = cast(Any, None)
        return response_201

    if response.status_code == 400:
        response_400 = ErrorBody.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 412:
        response_412 = ErrorBody.from_dict(response.json())

        return response_412

    if response.status_code == 413:
        response_413 = ErrorBody.from_dict(response.json())

        return response_413

    if response.status_code == 422:

        def _parse_response_422(data: object) -> ErrorBody | ValidationErrorBody:
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                response_422_type_0 = ValidationErrorBody.from_dict(data)

                return response_422_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            if not isinstance(data, dict):
                raise TypeError()
            response_422_type_1 = ErrorBody.from_dict(data)

            return response_422_type_1

        response_422 = _parse_response_422(response.json())

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
) -> Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: File | Unset = UNSET,
    upload_length: None | str | Unset = UNSET,
    upload_metadata: None | str | Unset = UNSET,
    upload_defer_length: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]:
    """Create a resumable upload (tus creation, creation-with-upload)

     Create an upload; with an `application/offset+octet-stream` body, append it at once.

    Args:
        upload_length (None | str | Unset):
        upload_metadata (None | str | Unset): `key base64value` pairs, comma-separated, at most 4
            KiB; `filename` names the document
        upload_defer_length (None | str | Unset): Not supported: 400
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        body=body,
        upload_length=upload_length,
        upload_metadata=upload_metadata,
        upload_defer_length=upload_defer_length,
        upload_checksum=upload_checksum,
        tus_resumable=tus_resumable,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: File | Unset = UNSET,
    upload_length: None | str | Unset = UNSET,
    upload_metadata: None | str | Unset = UNSET,
    upload_defer_length: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    """Create a resumable upload (tus creation, creation-with-upload)

     Create an upload; with an `application/offset+octet-stream` body, append it at once.

    Args:
        upload_length (None | str | Unset):
        upload_metadata (None | str | Unset): `key base64value` pairs, comma-separated, at most 4
            KiB; `filename` names the document
        upload_defer_length (None | str | Unset): Not supported: 400
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ErrorBody | ValidationErrorBody
    """

    return sync_detailed(
        client=client,
        body=body,
        upload_length=upload_length,
        upload_metadata=upload_metadata,
        upload_defer_length=upload_defer_length,
        upload_checksum=upload_checksum,
        tus_resumable=tus_resumable,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: File | Unset = UNSET,
    upload_length: None | str | Unset = UNSET,
    upload_metadata: None | str | Unset = UNSET,
    upload_defer_length: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]:
    """Create a resumable upload (tus creation, creation-with-upload)

     Create an upload; with an `application/offset+octet-stream` body, append it at once.

    Args:
        upload_length (None | str | Unset):
        upload_metadata (None | str | Unset): `key base64value` pairs, comma-separated, at most 4
            KiB; `filename` names the document
        upload_defer_length (None | str | Unset): Not supported: 400
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        body=body,
        upload_length=upload_length,
        upload_metadata=upload_metadata,
        upload_defer_length=upload_defer_length,
        upload_checksum=upload_checksum,
        tus_resumable=tus_resumable,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: File | Unset = UNSET,
    upload_length: None | str | Unset = UNSET,
    upload_metadata: None | str | Unset = UNSET,
    upload_defer_length: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    """Create a resumable upload (tus creation, creation-with-upload)

     Create an upload; with an `application/offset+octet-stream` body, append it at once.

    Args:
        upload_length (None | str | Unset):
        upload_metadata (None | str | Unset): `key base64value` pairs, comma-separated, at most 4
            KiB; `filename` names the document
        upload_defer_length (None | str | Unset): Not supported: 400
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ErrorBody | ValidationErrorBody
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            upload_length=upload_length,
            upload_metadata=upload_metadata,
            upload_defer_length=upload_defer_length,
            upload_checksum=upload_checksum,
            tus_resumable=tus_resumable,
        )
    ).parsed
