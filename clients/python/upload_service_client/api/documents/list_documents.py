from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.document_page import DocumentPage
from ...models.error_body import ErrorBody
from ...models.list_documents_status_type_0 import ListDocumentsStatusType0
from ...models.validation_error_body import ValidationErrorBody
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    limit: int | Unset = 20,
    status: ListDocumentsStatusType0 | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["limit"] = limit

    json_status: None | str | Unset
    if isinstance(status, Unset):
        json_status = UNSET
    elif isinstance(status, str):
        json_status = status
    else:
        json_status = status
    params["status"] = json_status

    json_cursor: None | str | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/documents",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> DocumentPage | ErrorBody | ValidationErrorBody | None:
    if response.status_code == 200:
        response_200 = DocumentPage.from_dict(response.json())

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
) -> Response[DocumentPage | ErrorBody | ValidationErrorBody]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    status: ListDocumentsStatusType0 | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
) -> Response[DocumentPage | ErrorBody | ValidationErrorBody]:
    """List your documents, newest first

     One page of the caller's documents.

    Args:
        limit (int | Unset):  Default: 20.
        status (ListDocumentsStatusType0 | None | Unset):
        cursor (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[DocumentPage | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        limit=limit,
        status=status,
        cursor=cursor,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    status: ListDocumentsStatusType0 | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
) -> DocumentPage | ErrorBody | ValidationErrorBody | None:
    """List your documents, newest first

     One page of the caller's documents.

    Args:
        limit (int | Unset):  Default: 20.
        status (ListDocumentsStatusType0 | None | Unset):
        cursor (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        DocumentPage | ErrorBody | ValidationErrorBody
    """

    return sync_detailed(
        client=client,
        limit=limit,
        status=status,
        cursor=cursor,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    status: ListDocumentsStatusType0 | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
) -> Response[DocumentPage | ErrorBody | ValidationErrorBody]:
    """List your documents, newest first

     One page of the caller's documents.

    Args:
        limit (int | Unset):  Default: 20.
        status (ListDocumentsStatusType0 | None | Unset):
        cursor (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[DocumentPage | ErrorBody | ValidationErrorBody]
    """

    kwargs = _get_kwargs(
        limit=limit,
        status=status,
        cursor=cursor,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 20,
    status: ListDocumentsStatusType0 | None | Unset = UNSET,
    cursor: None | str | Unset = UNSET,
) -> DocumentPage | ErrorBody | ValidationErrorBody | None:
    """List your documents, newest first

     One page of the caller's documents.

    Args:
        limit (int | Unset):  Default: 20.
        status (ListDocumentsStatusType0 | None | Unset):
        cursor (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        DocumentPage | ErrorBody | ValidationErrorBody
    """

    return (
        await asyncio_detailed(
            client=client,
            limit=limit,
            status=status,
            cursor=cursor,
        )
    ).parsed
