"""Readiness checks: each dependency probed concurrently, each bounded by a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.classifier.base import Classifier
from upload_service.db.migrate import SCHEMA_BEHIND, SchemaState
from upload_service.db.session import ping
from upload_service.storage.base import Storage

Check = Callable[[], Awaitable[None]]
MAX_ERROR_CHARS = 100


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict and one short line per check."""

    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, str]


async def _run(check: Check, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"error: no answer within {timeout_s:g}s"
    except Exception as exc:
        # The class name and the first line only: never a URL, a path or a credential.
        reason = getattr(exc, "message", None) or type(exc).__name__
        return f"error: {reason}".splitlines()[0][:MAX_ERROR_CHARS]
    return "ok"


class _SchemaBehind(Exception):
    message = SCHEMA_BEHIND


def _database_check(engine: AsyncEngine, schema: SchemaState | None) -> Check:
    async def check() -> None:
        if schema is None or schema.at_head:
            await ping(engine)
        elif not await schema.check():  # Asking for the revision is a round trip too.
            raise _SchemaBehind()

    return check


async def check_readiness(
    *,
    engine: AsyncEngine,
    storage: Storage,
    classifier: Classifier | None,
    timeout_s: float,
    requires_classifier: bool,
    extra: dict[str, Check] | None = None,
    schema: SchemaState | None = None,
) -> Readiness:
    """Database and storage are required; the classifier (and extras) only degrade readiness.

    The database is not ready while its schema is behind head (`schema`, when given).
    """
    checks: dict[str, Check] = {
        "database": _database_check(engine, schema),
        "storage": storage.check,
    }
    if classifier is not None:
        checks["classifier"] = classifier.check
    checks.update(extra or {})
    results = await asyncio.gather(*(_run(check, timeout_s) for check in checks.values()))
    outcome = dict(zip(checks, results, strict=True))
    required = {"database", "storage"} | ({"classifier"} if requires_classifier else set())
    failing = {name for name, result in outcome.items() if result != "ok"}
    if failing & required:
        status: Literal["ready", "degraded", "not_ready"] = "not_ready"
    elif failing:
        status = "degraded"
    else:
        status = "ready"
    return Readiness(status=status, checks=outcome)
