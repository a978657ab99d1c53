"""The janitor's schedule: one janitor job per `JANITOR_INTERVAL_S` slot, whichever worker adds it.

Every worker checks now and then. The current slot's job has a fixed id (`task_janitor_<slot>`,
the slot being Unix time divided by the interval), so however many workers race, one insert wins
and the rest do nothing. No job is added while a janitor job is still queued or running: a run
that outlasts its slot delays the next one instead of piling up behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from upload_service.jobs.queue import JobKind, insert_singleton_job, utc_now

logger = logging.getLogger(__name__)

# A new slot's job is added within this long of the slot's start.
JANITOR_CHECK_S = 60.0
# A failed run is retried a little; the next slot's run retries anyway.
JANITOR_MAX_ATTEMPTS = 3


def janitor_job_id(slot: int) -> str:
    """The id of the janitor job of one slot, the same in every worker."""
    return f"task_janitor_{slot}"


async def schedule_janitor(
    conn: AsyncConnection, *, interval_s: float, now: datetime | None = None
) -> str | None:
    """Queue the current slot's janitor job unless it exists or one is active; its id if queued."""
    slot = int((now or utc_now()).timestamp() // interval_s)
    job_id = janitor_job_id(slot)
    queued = await insert_singleton_job(
        conn, job_id=job_id, kind=JobKind.JANITOR, max_attempts=JANITOR_MAX_ATTEMPTS
    )
    return job_id if queued else None


class JanitorScheduler:
    """Makes sure the current slot's janitor job exists, checking every `check_s` or so."""

    def __init__(
        self, engine: AsyncEngine, interval_s: float, *, check_s: float | None = None
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._engine = engine
        self._interval_s = interval_s
        self._check_s = check_s if check_s is not None else min(interval_s, JANITOR_CHECK_S)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check at once, then every `check_s`, in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._check_loop(), name="janitor-schedule")

    async def stop(self) -> None:
        """Stop checking; a janitor job already queued stays for any worker to run."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _check_loop(self) -> None:
        # Ends when `stop` cancels it.
        while True:
            try:
                async with self._engine.begin() as conn:
                    job_id = await schedule_janitor(conn, interval_s=self._interval_s)
                if job_id is not None:
                    logger.info("scheduled janitor job %s", job_id)
            except Exception:
                # The next check tries again; one slot's run is all that a failure can cost.
                logger.warning("could not schedule the janitor job", exc_info=True)
            # Jitter keeps workers started together from checking in lock step.
            await asyncio.sleep(self._check_s * random.uniform(0.8, 1.2))  # noqa: S311
