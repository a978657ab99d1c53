from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_body import ErrorBody
from ...models.validation_error_body import ValidationErrorBody
from ...types import UNSET, File, Response, Unset


def _get_kwargs(
    upload_id: str,
    *,
    body: File,
    upload_offset: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(upload_offset, Unset):
        headers["Upload-Offset"] = upload_offset

    if not isinstance(upload_checksum, Unset):
        headers["Upload-Checksum"] = upload_checksum

    headers["Tus-Resumable"] = tus_resumable

    _kwargs: dict[str, Any] = {
        "method": "patch",
        "url": "/v1/uploads/tus/{upload_id}".format(
            upload_id=quote(str(upload_id), safe=""),
        ),
    }

    _kwargs["content"] = body.payload
    headers["Content-Type"] = "application/offset+octet-stream"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    if response.status_code == 204:
        response_204 = cast(Any, None)
        return response_204

    if response.status_code == 400:
        response_400 = ErrorBody.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorBody.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = ErrorBody.from_dict(response.json())

        return response_404

    if response.status_code == 408:
        response_408 = ErrorBody.from_dict(response.json())

        return response_408

    if response.status_code == 409:
        response_409 = ErrorBody.from_dict(response.json())

        return response_409

    if response.status_code == 410:
        response_410 = ErrorBody.from_dict(response.json())

        return response_410

    if response.status_code == 412:
        response_412 = ErrorBody.from_dict(response.json())

        return response_412

    if response.status_code == 415:
        response_415 = ErrorBody.from_dict(response.json())

        return response_415

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

    if response.status_code == 423:
        response_423 = ErrorBody.from_dict(response.json())

        return response_423

    if response.status_code == 429:
        response_429 = ErrorBody.from_dict(response.json())

        return response_429

    if response.status_code == 460:
        response_460 = ErrorBody.from_dict(response.json())

        return response_460

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
    upload_id: str,
    *,
    client: AuthenticatedClient,
    body: File,
    upload_offset: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]:
    """Append bytes to a resumable upload (tus PATCH)

     Append the body at `Upload-Offset`; the last bytes make the document.

    Args:
        upload_id (str):
        upload_offset (None | str | Unset):
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        upload_id=upload_id,
        body=body,
        upload_offset=upload_offset,
        upload_checksum=upload_checksum,
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
    body: File,
    upload_offset: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    """Append bytes to a resumable upload (tus PATCH)

     Append the body at `Upload-Offset`; the last bytes make the document.

    Args:
        upload_id (str):
        upload_offset (None | str | Unset):
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ErrorBody | ValidationErrorBody
    """

    return sync_detailed(
        upload_id=upload_id,
        client=client,
        body=body,
        upload_offset=upload_offset,
        upload_checksum=upload_checksum,
        tus_resumable=tus_resumable,
    ).parsed


async def asyncio_detailed(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    body: File,
    upload_offset: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]:
    """Append bytes to a resumable upload (tus PATCH)

     Append the body at `Upload-Offset`; the last bytes make the document.

    Args:
        upload_id (str):
        upload_offset (None | str | Unset):
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorBody | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        upload_id=upload_id,
        body=body,
        upload_offset=upload_offset,
        upload_checksum=upload_checksum,
        tus_resumable=tus_resumable,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    upload_id: str,
    *,
    client: AuthenticatedClient,
    body: File,
    upload_offset: None | str | Unset = UNSET,
    upload_checksum: None | str | Unset = UNSET,
    tus_resumable: str,
) -> Any | ErrorBody | ErrorBody | ValidationErrorBody | None:
    """Append bytes to a resumable upload (tus PATCH)

     Append the body at `Upload-Offset`; the last bytes make the document.

    Args:
        upload_id (str):
        upload_offset (None | str | Unset):
        upload_checksum (None | str | Unset):
        tus_resumable (str): The protocol version: `1.0.0`
        body (File):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorBody | ErrorBody | ValidationErrorBody
    """

    return (
        await asyncio_detailed(
            upload_id=upload_id,
            client=client,
            body=body,
            upload_offset=upload_offset,
            upload_checksum=upload_checksum,
            tus_resumable=tus_resumable,
        )
    ).parsed
