"""While the classifier's breaker is open: probe it, wake its jobs when it is back, end old waits.

A worker whose breaker opened claims no classify jobs; this task runs the classifier's health
check when the breaker says a probe is due. When a probe passes, every classify job waiting for
the classifier is made due at once and the worker is woken. While probes keep failing, the
classify jobs that have waited longer than `JOB_RETRY_WINDOW_S` are failed where they lie in the
queue (checked at most every `EXPIRED_WAITS_CHECK_S`), as a claimed one would be: otherwise an
open breaker would hold them back forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from upload_service.classifier.base import Classifier
from upload_service.errors import ClassifierUnavailable
from upload_service.jobs.breaker import CircuitBreaker
from upload_service.jobs.handler_context import HandlerContext
from upload_service.jobs.handlers import FAILURE_EFFECTS, describe_error
from upload_service.jobs.leases import ClaimedJob, expired_waits, give_up_waiting, wake_waiting
from upload_service.jobs.queue import JobKind, utc_now
from upload_service.observability.metrics import record_job

logger = logging.getLogger("upload_service.jobs.worker")

PROBE_TIMEOUT_S = 5.0
EXPIRED_WAITS_CHECK_S = 2.0
MAX_EXPIRED_BATCH = 100


def gave_up(message: str, waited_s: float) -> str:
    """The error of a job that waited out the whole retry window."""
    return f"{message}; gave up after {waited_s:.0f} s of waiting (JOB_RETRY_WINDOW_S)"


class ClassifierProbe:
    """The probe task of one worker process's classifier breaker."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        classifier: Classifier,
        ctx: HandlerContext,
        *,
        retry_window_s: float,
        on_back: Callable[[], None],
        worker_id: str,
    ) -> None:
        self._breaker = breaker
        # The bare classifier: a probe's outcome must not count as a call through the breaker.
        self._classifier = classifier
        self._ctx = ctx
        self._engine = ctx.engine
        self._retry_window_s = retry_window_s
        self._on_back = on_back
        self._worker_id = worker_id
        self._expired_checked_at: float | None = None

    async def run(self) -> None:
        """Probe whenever the breaker asks, until cancelled."""
        while True:
            await self._breaker.wait_for_probe()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await self._classifier.check()
            except Exception as exc:
                self._breaker.probe_failed()
                logger.info("classifier still unavailable (%s)", type(exc).__name__)
                await self._end_expired_waits()
                continue
            self._breaker.probe_passed()
            try:
                async with self._engine.begin() as conn:
                    woken = await wake_waiting(conn, JobKind.CLASSIFY)
            except Exception:
                # Not fatal: they run when their own backoff ends.
                logger.exception("worker %s could not wake the waiting jobs", self._worker_id)
                woken = []
            logger.warning("the classifier is back; %d waiting job(s) due now", len(woken))
            self._on_back()

    async def _end_expired_waits(self) -> None:
        """Fail the classify jobs the open breaker held back past the retry window."""
        checked_at = time.monotonic()
        last = self._expired_checked_at
        if last is not None and checked_at - last < EXPIRED_WAITS_CHECK_S:
            return
        self._expired_checked_at = checked_at
        reason = describe_error(ClassifierUnavailable())
        failure_effects = FAILURE_EFFECTS[JobKind.CLASSIFY]
        ended: list[tuple[ClaimedJob, str]] = []
        now = utc_now()
        try:
            async with self._engine.begin() as conn:
                expired = await expired_waits(
                    conn,
                    JobKind.CLASSIFY,
                    window_s=self._retry_window_s,
                    limit=MAX_EXPIRED_BATCH,
                    include_untried=self._breaker.open_for_s >= self._retry_window_s,
                    now=now,
                )
                for job in expired:
                    waited_s = (now - (job.unavailable_since or job.run_at)).total_seconds()
                    message = gave_up(reason, waited_s)
                    if await give_up_waiting(conn, job, error=message, now=now):
                        await failure_effects(self._ctx, job, message)(conn)
                        ended.append((job, message))
        except Exception:
            # Not fatal: the next failed probe tries again.
            logger.exception("worker %s could not end the expired waits", self._worker_id)
            return
        for job, message in ended:
            logger.error(
                "job %s (%s) failed while the breaker was open: %s", job.id, job.kind, message
            )
            record_job(job.kind, "failed")
