"""The OpenAPI document of a service that offers direct uploads (S3): valid, and saying what
each direct-upload operation answers."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from upload_service.config import load_settings
from upload_service.main import create_app

DIRECT = "/v1/uploads/direct"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = load_settings(
        _env_file=None, environment="test", jwt_secret="x" * 32, storage_backend="s3", s3_bucket="b"
    )
    spec: dict[str, Any] = create_app(settings).openapi()
    return spec


def test_the_document_is_valid_and_lists_every_direct_operation(document: dict[str, Any]) -> None:
    validate(document)
    paths = document["paths"]
    assert paths[DIRECT]["post"]["operationId"] == "create_direct_upload"
    assert paths[f"{DIRECT}/{{upload_id}}/parts"]["post"]["operationId"] == (
        "sign_direct_upload_parts"
    )
    assert paths[f"{DIRECT}/{{upload_id}}"]["get"]["operationId"] == "get_direct_upload"
    assert paths[f"{DIRECT}/{{upload_id}}"]["delete"]["operationId"] == "cancel_direct_upload"
    complete = paths[f"{DIRECT}/{{upload_id}}/complete"]["post"]
    assert complete["operationId"] == "complete_direct_upload"
    assert {"202", "401", "404", "410", "422", "423", "429", "500"} <= set(complete["responses"])
    assert "SIZE_MISMATCH" in complete["responses"]["422"]["description"]
    assert "CHECKSUM_MISMATCH" in complete["responses"]["422"]["description"]
    assert {"201", "413", "422"} <= set(paths[DIRECT]["post"]["responses"])
    for item in (paths[DIRECT], paths[f"{DIRECT}/{{upload_id}}/complete"]):
        for operation in item.values():
            assert operation["security"] == [{"BearerAuth": []}]
