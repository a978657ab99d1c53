"""Settings: every variable of the configuration table, typed and validated once at start-up."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"  # noqa: S105 - refused in production
_RATE = re.compile(r"^\s*\d+\s*/\s*(second|minute|hour|day)\s*$")
_ALLOWED_ALGORITHMS = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"}

CommaList = Annotated[list[str], NoDecode]


class ConfigurationError(Exception):
    """Raised with one line naming the variable that is wrong."""


class Settings(BaseSettings):
    """Configuration from the environment and `.env`; names match the contract's table."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./var/upload_service.db"
    # A direct PostgreSQL connection for LISTEN (wake-ups), when DATABASE_URL goes through a
    # transaction pooler such as PgBouncer, which cannot hold a LISTEN; unset: DATABASE_URL.
    database_listen_url: str | None = None
    # DATABASE_URL is a transaction pooler (PgBouncer `pool_mode = transaction`): no statement
    # is prepared under a name that another client's transaction could meet on the same server
    # connection. Unset: true when DATABASE_LISTEN_URL is set (that is what it is for).
    database_pooler: bool | None = None

    storage_backend: Literal["local", "s3"] = "local"
    local_storage_dir: Path = Path("./var/storage")
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Where clients reach S3, for the URLs direct uploads sign (empty: S3_ENDPOINT_URL).
    s3_public_endpoint_url: str | None = None

    classifier_target: str | None = None
    classifier_timeout_s: float = Field(default=10.0, gt=0)

    jwt_secret: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: CommaList = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # How long fetched JWKS keys are trusted, and the least time between two fetches (so a
    # flood of unknown `kid`s cannot make the service hammer the key server).
    jwt_jwks_cache_ttl_s: float = Field(default=300.0, gt=0)
    jwt_jwks_min_refresh_s: float = Field(default=30.0, ge=0)

    max_file_size_mb: int = Field(default=50, gt=0, le=5 * 1024)
    upload_buffer_budget_mb: int = Field(default=64, ge=16)
    # An upload body that sends nothing for this long is cut off (408) and releases its budget.
    upload_idle_timeout_s: float = Field(default=30.0, gt=0)
    # A JSON request body over this is refused (413) without being read whole.
    max_json_body_kb: int = Field(default=64, gt=0, le=64 * 1024)
    allowed_extensions: CommaList = Field(
        default_factory=lambda: [".pdf", ".png", ".jpg", ".jpeg", ".docx"]
    )
    cors_allow_origins: CommaList = Field(default_factory=list)

    rate_limit_storage_url: str = "memory://"
    upload_rate_limit: str = "100/minute"
    query_rate_limit: str = "1000/minute"
    # Namespaces the counters, so deployments sharing one Redis keep separate budgets.
    rate_limit_key_prefix: str = Field(default="upload-service", pattern=r"^[A-Za-z0-9._:-]{1,64}$")

    notification_url: str | None = None
    notification_secret: str | None = None

    worker_enabled: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    # `host:port` where `upload-service worker` serves its /metrics for Prometheus; empty: nowhere.
    worker_metrics_bind: str = Field(default="", pattern=r"^$|^[^\s:]+:\d{1,5}$")
    job_lease_s: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=5, ge=1)
    # How long a job keeps retrying while a dependency (classifier, webhook receiver) is
    # unavailable; those retries do not count against JOB_MAX_ATTEMPTS.
    job_retry_window_s: float = Field(default=86400.0, gt=0)
    # How often one janitor job runs across all workers; 0 stops workers from scheduling it.
    janitor_interval_s: float = Field(default=3600.0, ge=0)
    # Age past which an object without a row, or an unfinished upload, is taken for a crash's
    # leftover: it must exceed the longest gap between an upload's object and its row commit.
    janitor_orphan_age_s: float = Field(default=3600.0, ge=0)
    # A row-less object is looked up again this much later before it goes: longer than an
    # upload takes from completing its object to committing its row (S3 dates a multipart
    # object from the upload's start, so a long upload's fresh object can look old).
    janitor_settle_s: float = Field(default=60.0, ge=0)

    # Resumable (tus) uploads: an unfinished one expires this long after its last PATCH, and
    # one user may hold this many unfinished ones at once.
    tus_upload_expiry_s: float = Field(default=86400.0, gt=0)
    tus_max_open_uploads: int = Field(default=20, ge=1)

    # Direct uploads to S3 (presigned); None means "on when STORAGE_BACKEND=s3".
    direct_uploads: bool | None = None
    direct_single_max_mb: int = Field(default=16, ge=1, le=5 * 1024)
    direct_url_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)

    # Event stream: how far back `Last-Event-ID` replays, and open streams per user.
    events_retention_s: float = Field(default=3600.0, gt=0)
    events_max_streams: int = Field(default=5, ge=1)
    # Seconds between the comment lines that keep an idle event stream open through proxies.
    events_heartbeat_s: float = Field(default=15.0, gt=0, le=15)
    # PostgreSQL: how long a process's claim on its open streams outlives its last renewal
    # (renewed every third of it). The streams of a process killed without closing them count
    # against their users' EVENTS_MAX_STREAMS until then, so it is short; 30 s is two
    # heartbeats, and costs a process one statement every 10 s while it holds any stream.
    events_stream_lease_s: float = Field(default=30.0, ge=0.5, le=3600)

    # The built web page (`make web`); unset: the one built into the package.
    web_assets_dir: Path | None = None

    # Every database connection one process may open, all its pools together.
    db_max_connections: int = Field(default=10, ge=2, le=1000)

    readiness_timeout_s: float = Field(default=2.0, gt=0)
    readiness_requires_classifier: bool = False

    log_format: Literal["console", "json"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # A request slower than this is logged as a warning.
    slow_request_ms: float = Field(default=1000.0, gt=0)

    @field_validator("jwt_algorithms", "allowed_extensions", "cors_allow_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_extensions")
    @classmethod
    def _normalise_extensions(cls, value: list[str]) -> list[str]:
        known = {".pdf", ".png", ".jpg", ".jpeg", ".docx"}
        out = [ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in value]
        unknown = sorted(set(out) - known)
        if unknown:
            raise ValueError(f"unsupported extension(s) {unknown}; known: {sorted(known)}")
        return out

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        bad = sorted(set(value) - _ALLOWED_ALGORITHMS)
        if bad or not value:
            raise ValueError(f"must list algorithms from {sorted(_ALLOWED_ALGORITHMS)}")
        return value

    @field_validator("upload_rate_limit", "query_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if not _RATE.match(value):
            raise ValueError("must look like '100/minute'")
        return value.replace(" ", "")

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _rate_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must start with memory://, redis:// or rediss://")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("database_listen_url")
    @classmethod
    def _listen_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.jwt_secret is None and self.environment == "development":
            self.jwt_secret = DEV_JWT_SECRET
        if not self.is_sqlite and self.db_max_connections < 3:
            raise ValueError(
                "DB_MAX_CONNECTIONS: at least 3 on PostgreSQL "
                "(writes, reads, and the connection that listens for wake-ups)"
            )
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        if self.environment == "production":
            if self.jwt_secret == DEV_JWT_SECRET:
                raise ValueError("JWT_SECRET: the development secret is refused in production")
            if self.is_sqlite:
                raise ValueError("DATABASE_URL: SQLite is refused in production")
            if self.notification_url and not self.notification_secret:
                raise ValueError("NOTIFICATION_SECRET is required with NOTIFICATION_URL")
        if self.jwt_jwks_url is None and any(a[:2] in ("RS", "ES") for a in self.jwt_algorithms):
            raise ValueError("JWT_JWKS_URL is required when JWT_ALGORITHMS lists RS* or ES*")
        if self.jwt_secret is None and self.jwt_jwks_url is None:
            raise ValueError("JWT_SECRET or JWT_JWKS_URL must be set outside development")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def listen_url(self) -> str:
        """Where this process LISTENs for wake-ups: the direct URL, else DATABASE_URL."""
        return self.database_listen_url or self.database_url

    @computed_field  # type: ignore[prop-decorator]
    @property
    def behind_pooler(self) -> bool:
        """Whether DATABASE_URL is a transaction pooler (statements are prepared unnamed)."""
        if self.database_pooler is not None:
            return self.database_pooler
        return self.database_listen_url is not None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def max_file_size_bytes(self) -> int:
        return self.max_file_size_mb * 1024 * 1024

    @property
    def dev_sign_in_enabled(self) -> bool:
        """The web page's sign-in by user name: development with the development secret only."""
        return self.environment == "development" and self.jwt_secret == DEV_JWT_SECRET

    @computed_field  # type: ignore[prop-decorator]
    @property
    def max_json_body_bytes(self) -> int:
        return self.max_json_body_kb * 1024

    @computed_field  # type: ignore[prop-decorator]
    @property
    def upload_buffer_budget_bytes(self) -> int:
        return self.upload_buffer_budget_mb * 1024 * 1024

    @computed_field  # type: ignore[prop-decorator]
    @property
    def direct_uploads_enabled(self) -> bool:
        if self.direct_uploads is None:
            return self.storage_backend == "s3"
        return self.direct_uploads and self.storage_backend == "s3"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "console" if self.environment == "development" else "json"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation failure into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigurationError(f"{field}: {message}" if field else message) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
