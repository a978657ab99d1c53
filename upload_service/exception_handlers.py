"""The one place where errors become HTTP responses in the contract's envelope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from upload_service.errors import (
    MethodNotAllowed,
    NotFound,
    RequestValidationFailed,
    UploadServiceError,
    error_body,
)


def _request_id(request: Request) -> str | None:
    state: dict[str, Any] = request.scope.get("state", {})
    return state.get("request_id")


def error_response(request: Request, exc: UploadServiceError, **extra: Any) -> JSONResponse:
    """Render a domain error as its status, headers and envelope."""
    body = error_body(exc.error_code, exc.message, _request_id(request), exc.details, **extra)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers or None)


async def handle_domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Domain errors carry their own status and code."""
    assert isinstance(exc, UploadServiceError)
    return error_response(request, exc)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Field errors without the input values (which may be large or sensitive)."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    return error_response(request, RequestValidationFailed(), errors=jsonable_encoder(errors))


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names the methods of the first route whose path matched; a path served by
    # several routes (GET and DELETE /v1/documents/{doc_id}) must list all of them. A literal
    # path (/v1/documents/batch-check) speaks for itself, not through a template it also fits.
    templated: set[str] = set()
    literal: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        match, _ = context.matches(request.scope)
        if match is Match.PARTIAL and context.methods:
            is_literal = context.path_format == request.url.path
            (literal if is_literal else templated).update(context.methods)
    return ", ".join(sorted(literal or templated))


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 (unknown path, wrong method) in our envelope."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(request, NotFound())
    if exc.status_code == 405:
        not_allowed = MethodNotAllowed()
        not_allowed.headers = dict(exc.headers or {})
        allowed = _allowed_methods(request)
        if allowed:
            not_allowed.headers["Allow"] = allowed
        return error_response(request, not_allowed)
    body = error_body("HTTP_ERROR", str(exc.detail), _request_id(request))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers; Starlette picks the most specific class by MRO, not by order."""
    app.add_exception_handler(UploadServiceError, handle_domain_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
