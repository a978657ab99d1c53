"""Settings: typed, validated, and refusing unsafe production configuration in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from upload_service.config import DEV_JWT_SECRET, ConfigurationError, load_settings

PG = "postgresql+asyncpg://u@db/app"


def test_defaults_are_the_embedded_service() -> None:
    settings = load_settings(_env_file=None)
    assert settings.is_sqlite
    assert settings.storage_backend == "local"
    assert settings.classifier_target is None
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.max_file_size_bytes == 50 * 1024 * 1024
    assert settings.allowed_extensions == [".pdf", ".png", ".jpg", ".jpeg", ".docx"]


def test_comma_separated_lists_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ALLOWED_EXTENSIONS", "pdf,.PNG")
    settings = load_settings(_env_file=None)
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.allowed_extensions == [".pdf", ".png"]


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        load_settings(environment="production", database_url=PG, jwt_secret=DEV_JWT_SECRET)


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        load_settings(environment="production", jwt_secret="x" * 40)


def test_production_needs_a_key_to_verify_tokens() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET or JWT_JWKS_URL"):
        load_settings(environment="production", database_url=PG)


def test_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ConfigurationError, match="S3_BUCKET"):
        load_settings(storage_backend="s3")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_FILE_SIZE_MB", "lots"),
        ("UPLOAD_RATE_LIMIT", "fast"),
        ("DATABASE_URL", "mysql://x"),
        ("JWT_ALGORITHMS", "none"),
        ("ALLOWED_EXTENSIONS", ".exe"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "upload_service.cli", "migrate"],
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_janitor_runs_hourly_by_default_and_refuses_negative_times() -> None:
    settings = load_settings(_env_file=None)
    assert (settings.janitor_interval_s, settings.janitor_orphan_age_s) == (3600, 3600)
    assert load_settings(_env_file=None, janitor_interval_s=0).janitor_interval_s == 0
    with pytest.raises(ConfigurationError, match="JANITOR_ORPHAN_AGE_S"):
        load_settings(_env_file=None, janitor_orphan_age_s=-1)


def test_bad_configuration_under_uvicorn_is_one_line_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "upload_service.main:app", "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "ENVIRONMENT": "production"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL: SQLite is refused in production"
    ]
