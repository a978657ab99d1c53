"""The public OpenAPI document: valid, and saying what the contract promises clients."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from openapi_spec_validator import validate

import upload_service
from upload_service.api.openapi import UNDOCUMENTED
from upload_service.cli import command as cli
from upload_service.config import load_settings
from upload_service.main import create_app

ERROR_BODY = "#/components/schemas/ErrorBody"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(load_settings(_env_file=None, environment="test", jwt_secret="x" * 32))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def schema_ref(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"].get("$ref"))


def test_public_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_info_names_the_service_its_version_and_the_rules(document: dict[str, Any]) -> None:
    info = document["info"]
    assert info["title"] == "Upload Service API"
    assert info["version"] == upload_service.__version__
    description = info["description"]
    for topic in ("Authentication", "Bearer", "Rate limits", "429", ".pdf", ".png", ".docx"):
        assert topic in description


def test_bearer_auth_is_required_by_every_operation(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["BearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for path, method, operation in operations(document):
        assert operation["security"] == [{"BearerAuth": []}], (method, path)


def test_every_operation_documents_401_429_500_with_the_error_schema(
    document: dict[str, Any],
) -> None:
    for path, method, operation in operations(document):
        for status in ("401", "429", "500"):
            assert schema_ref(operation["responses"][status]) == ERROR_BODY, (method, path, status)


def test_validation_failures_are_documented_with_their_field_errors(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert "errors" in schemas["ValidationErrorBody"]["required"]
    assert set(schemas["ErrorBody"]["required"]) >= {"error_code", "message", "request_id"}
    assert "HTTPValidationError" not in schemas
    validation = "#/components/schemas/ValidationErrorBody"
    for path, method, operation in operations(document):
        response = operation["responses"]["422"]
        schema = response["content"]["application/json"]["schema"]
        if "anyOf" in schema:
            # A content refusal or a validation failure (the upload, the tus creation, PATCH).
            assert {"$ref": validation} in schema["anyOf"], (method, path)
            continue
        assert schema_ref(response) == validation, (method, path)


def test_upload_documents_its_answers_and_multipart_body(document: dict[str, Any]) -> None:
    upload = document["paths"]["/v1/documents"]["post"]
    assert upload["operationId"] == "upload_document"
    assert {"202", "400", "413", "422"} <= set(upload["responses"])
    assert schema_ref(upload["responses"]["202"]) == "#/components/schemas/DocumentOut"
    for status in ("400", "413"):
        assert schema_ref(upload["responses"][status]) == ERROR_BODY
    body = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["properties"]["file"] == {**body["properties"]["file"], "format": "binary"}
    assert body["properties"]["file"]["type"] == "string"


def test_routes_naming_a_resource_document_404(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if "{" in path:
            assert schema_ref(operation["responses"]["404"]) == ERROR_BODY, (method, path)


def test_every_schema_carries_examples(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        properties = schema.get("properties", {}).values()
        has_examples = "examples" in schema or any("examples" in p for p in properties)
        assert has_examples, name


def test_operation_ids_are_stable_readable_and_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert SNAKE.match(operation_id), operation_id
        assert not re.search(r"v1|documents_doc_id|_(get|post|delete)$", operation_id)
    assert {
        "upload_document",
        "list_documents",
        "get_document",
        "download_document",
        "delete_document",
        "batch_check_documents",
    } <= set(ids)


def test_internal_probe_and_metrics_paths_are_not_published(document: dict[str, Any]) -> None:
    for path in document["paths"]:
        assert not path.startswith(("/internal", "/health", "/readiness", "/metrics")), path


def test_openapi_command_prints_the_public_document(
    document: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["openapi"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["paths"].keys() == document["paths"].keys()
    assert printed["components"]["securitySchemes"] == document["components"]["securitySchemes"]


def test_internal_flag_prints_every_route(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["openapi", "--internal"]) == 0
    printed = json.loads(capsys.readouterr().out)
    validate(printed)
    routed = {
        context.path
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        # The web page, its assets and the docs' pages are no API (`api/page.py`).
        and UNDOCUMENTED not in context.original_route.tags
    }
    assert routed <= set(printed["paths"])
    assert not {"/", "/docs", "/redoc"} & set(printed["paths"])
    assert {"/health", "/readiness"} <= set(printed["paths"])
    # The probes need no token; everything else still does.
    assert printed["paths"]["/health"]["get"]["security"] == []
    assert printed["paths"]["/v1/documents"]["post"]["security"] == [{"BearerAuth": []}]
