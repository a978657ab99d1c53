"""The job worker: claims due jobs, runs up to `WORKER_CONCURRENCY` at once, keeps their leases.

One dispatcher task claims as many jobs as there are free slots (up to ten per statement) and
starts a task for each, so a claimed job is always a running job. Successes are committed in
groups: while one transaction records a batch, the next batch gathers, so under load a commit
serves many jobs and when idle it serves one without waiting; its effects are applied a kind at
a time (`Batched`) and its events written in one statement (`one_outbox_write`). A housekeeping
task renews the leases of running jobs and puts back in the queue the jobs of workers that died;
unless `JANITOR_INTERVAL_S` is 0, a schedule task makes sure one janitor job runs per interval.
`stop()` stops claiming, lets running jobs finish for a while, then hands back what is left, so
that another worker can take it at once instead of waiting for its lease to run out.

A job whose classifier or webhook receiver is unavailable waits for it (deferred, its attempt
given back) for up to `JOB_RETRY_WINDOW_S`. The classifier sits behind a circuit breaker: after a
few unavailable calls in a row the worker stops claiming classify jobs and a probe task runs the
classifier's health check, less and less often; when it passes, every classify job waiting for
the classifier is made due at once, and claiming resumes; while it stays open, classify jobs that
have waited past the window are failed where they lie (`classifier_probe.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from ulid import ULID

from upload_service.classifier.base import Classifier
from upload_service.config import Settings
from upload_service.events.outbox import JOBS_CHANNEL, one_outbox_write, wake_workers
from upload_service.events.wakeups import Wakeups
from upload_service.jobs.breaker import CircuitBreaker, GuardedClassifier
from upload_service.jobs.classifier_probe import ClassifierProbe, gave_up
from upload_service.jobs.handler_context import (
    Effects,
    HandlerContext,
    PermanentJobError,
    apply_effects,
)
from upload_service.jobs.handlers import (
    FAILURE_EFFECTS,
    HANDLERS,
    describe_error,
    is_permanent,
    is_unavailable,
    requested_delay_s,
)
from upload_service.jobs.leases import (
    ClaimedJob,
    defer_job,
    mark_failed,
    mark_succeeded,
    release_jobs,
    renew_leases,
    requeue_expired,
    schedule_retry,
)
from upload_service.jobs.processing import claim_and_prepare, documents_requeued
from upload_service.jobs.queue import Backoff, JobKind, utc_now
from upload_service.jobs.scheduler import JanitorScheduler
from upload_service.observability.context import correlation_id_var
from upload_service.observability.metrics import record_job
from upload_service.storage.base import Storage

logger = logging.getLogger(__name__)

# How often a worker that is woken by `NOTIFY` still looks for due jobs by itself: jobs made due
# by time alone (another worker's retry) and wake-ups lost with a connection are found this late.
FALLBACK_POLL_S = 10.0
MAX_CLAIM_BATCH = 10
MAX_COMMIT_BATCH = 50
MAX_DB_ERROR_PAUSE_S = 5.0
RELEASE_TIMEOUT_S = 5.0


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine a session factory is bound to."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the session factory must be bound to an AsyncEngine")
    return bind


def default_worker_id() -> str:
    """Host, pid and a random suffix: unique per worker, and readable in `jobs.locked_by`."""
    return f"{socket.gethostname()}:{os.getpid()}:{str(ULID())[-6:]}"


@dataclass(slots=True)
class _Success:
    job: ClaimedJob
    effects: Effects | None
    recorded: asyncio.Future[bool]


class Worker:
    """Drains the job queue with `settings.worker_concurrency` jobs in flight at most."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        classifier: Classifier,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        worker_id: str | None = None,
        backoff: Backoff | None = None,
        poll_interval_s: float = 0.25,
        concurrency: int | None = None,
        janitor_check_s: float | None = None,
        breaker: CircuitBreaker | None = None,
        wakeups: Wakeups | None = None,
        fallback_poll_s: float = FALLBACK_POLL_S,
    ) -> None:
        self.worker_id = worker_id or default_worker_id()
        # Core statements on the engine, not ORM sessions: at hundreds of jobs a second the
        # session machinery costs more than the statements themselves (measured).
        self._engine = engine_of(sessions)
        self._breaker = breaker or CircuitBreaker()
        self._ctx = HandlerContext(
            engine=self._engine,
            storage=storage,
            classifier=GuardedClassifier(classifier, self._breaker),
            http=http,
            settings=settings,
        )
        self._backoff = backoff or Backoff()
        self._retry_window_s = settings.job_retry_window_s
        self._poll_interval_s = poll_interval_s
        self._wakeups = wakeups
        # Woken by NOTIFY when a job is queued, a worker polls only as a slow fallback.
        self._idle_poll_s = fallback_poll_s if wakeups is not None else poll_interval_s
        self._unlisten: list[Callable[[], None]] = []
        self._concurrency = concurrency or settings.worker_concurrency
        self._lease_s = settings.job_lease_s
        # Renew well before expiry, so one slow round trip does not cost a lease.
        self._housekeeping_s = max(0.1, min(self._lease_s / 3, 10.0))
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[str] = set()
        self._lost: set[str] = set()
        self._successes: list[_Success] = []
        self._committer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._probe = ClassifierProbe(
            self._breaker,
            classifier,
            self._ctx,
            retry_window_s=self._retry_window_s,
            on_back=self._wake.set,
            worker_id=self.worker_id,
        )
        self._janitor_schedule = (
            JanitorScheduler(self._engine, settings.janitor_interval_s, check_s=janitor_check_s)
            if settings.janitor_interval_s > 0
            else None
        )

    @property
    def running_job_ids(self) -> set[str]:
        """Ids of the jobs this worker is running now."""
        return set(self._inflight)

    async def start(self) -> None:
        """Start claiming and running jobs in background tasks."""
        if self._dispatcher is not None:
            raise RuntimeError("the worker is already started")
        if self._wakeups is not None:
            self._unlisten = [
                self._wakeups.listen(JOBS_CHANNEL, lambda _payload: self._wake.set()),
                self._wakeups.on_reconnect(self._wake.set),
            ]
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="job-dispatcher")
        self._housekeeper = asyncio.create_task(self._housekeeping_loop(), name="job-leases")
        self._prober = asyncio.create_task(self._probe.run(), name="classifier-probe")
        if self._janitor_schedule is not None:
            self._janitor_schedule.start()
        logger.info("worker %s started (concurrency %d)", self.worker_id, self._concurrency)

    async def stop(self, timeout: float) -> None:  # noqa: ASYNC109 - a grace period, then release
        """Stop claiming, let running jobs finish for up to `timeout` s, release the rest."""
        if self._dispatcher is None or self._stopping:
            return
        self._stopping = True
        for unlisten in self._unlisten:
            unlisten()
        self._wake.set()
        if self._janitor_schedule is not None:
            await self._janitor_schedule.stop()
        if self._prober is not None:
            await _finish_or_cancel({self._prober}, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        await _finish_or_cancel({self._dispatcher}, deadline - loop.time())
        # Taken before cancelling: a task's done-callback removes it from `_inflight`.
        running = dict(self._inflight)
        unfinished = await _finish_or_cancel(set(running.values()), deadline - loop.time())
        held = sorted(
            job_id
            for job_id, task in running.items()
            if task in unfinished and job_id not in self._lost
        )
        if self._committer is not None:
            await _finish_or_cancel({self._committer}, RELEASE_TIMEOUT_S)
        if held:
            await self._release(held)
        if self._housekeeper is not None:
            await _finish_or_cancel({self._housekeeper}, 0)
        logger.info("worker %s stopped", self.worker_id)

    async def _release(self, job_ids: list[str]) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S), self._engine.begin() as conn:
                released = await release_jobs(conn, worker_id=self.worker_id, job_ids=job_ids)
                await documents_requeued(conn, released)
                if released:
                    await wake_workers(conn)  # Another worker takes them at once.
        except Exception:
            # Not fatal: the leases run out and another worker takes the jobs then.
            logger.exception("worker %s could not release %d job(s)", self.worker_id, len(job_ids))
            return
        logger.info("worker %s released %d unfinished job(s)", self.worker_id, len(released))

    async def _dispatch_loop(self) -> None:
        errors = 0
        while not self._stopping:
            # Cleared before counting free slots: a job ending after this line wakes us up.
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            if free <= 0:
                await self._pause(self._poll_interval_s * 4)
                continue
            try:
                async with self._engine.begin() as conn:
                    jobs, subjects = await claim_and_prepare(
                        conn,
                        worker_id=self.worker_id,
                        limit=min(free, MAX_CLAIM_BATCH),
                        lease_s=self._lease_s,
                        skip_kind=JobKind.CLASSIFY if self._breaker.is_open else None,
                    )
            except Exception:
                errors += 1
                logger.exception("worker %s could not claim jobs", self.worker_id)
                await self._pause(min(MAX_DB_ERROR_PAUSE_S, self._poll_interval_s * 2**errors))
                continue
            errors = 0
            self._ctx.subjects.update(subjects)
            for job in jobs:
                task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                self._inflight[job.id] = task
                task.add_done_callback(partial(self._forget, job.id))
            if not jobs:
                # Jitter keeps idle workers from polling in lock step.
                await self._pause(self._idle_poll_s * random.uniform(0.5, 1.5))  # noqa: S311

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(job_id, None)
        self._finishing.discard(job_id)
        self._lost.discard(job_id)
        self._ctx.subjects.pop(job_id, None)
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self._housekeeping_s)
            try:
                await self._renew_and_reap()
            except Exception:
                logger.exception("worker %s could not renew leases", self.worker_id)

    async def _renew_and_reap(self) -> None:
        held = set(self._inflight)
        async with self._engine.begin() as conn:
            renewed = await renew_leases(
                conn, worker_id=self.worker_id, job_ids=held, lease_s=self._lease_s
            )
        for job_id in held - renewed:
            task = self._inflight.get(job_id)
            if task is None or job_id in self._finishing:
                continue  # It ended while we were renewing.
            logger.warning("job %s: lease lost; another worker owns it now", job_id)
            self._lost.add(job_id)
            task.cancel()
        async with self._engine.begin() as conn:
            requeued = await requeue_expired(conn)
            if requeued:
                await wake_workers(conn)
        if requeued:
            logger.warning("requeued %d job(s) whose worker died: %s", len(requeued), requeued)

    async def _run(self, job: ClaimedJob) -> None:
        token = correlation_id_var.set(job.correlation_id)
        try:
            await self._execute(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Its lease runs out and it runs again: at least once, never lost.
            logger.exception("job %s: could not record its outcome", job.id)
        finally:
            correlation_id_var.reset(token)

    async def _execute(self, job: ClaimedJob) -> None:
        logger.debug("job %s (%s) attempt %d/%d", job.id, job.kind, job.attempts, job.max_attempts)
        if job.attempts > job.max_attempts:
            # Claimed again after its worker died during the last attempt it had.
            await self._fail(job, "The worker was lost during the last attempt")
            return
        handler = HANDLERS.get(job.kind)
        try:
            if handler is None:
                raise PermanentJobError(f"Unknown job kind {job.kind!r}")
            effects = await handler(self._ctx, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._after_error(job, exc)
            return
        await self._succeed(job, effects)

    async def _succeed(self, job: ClaimedJob, effects: Effects | None) -> None:
        self._finishing.add(job.id)
        recorded = asyncio.get_running_loop().create_future()
        self._successes.append(_Success(job, effects, recorded))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_successes(), name="job-commits")
        if not await recorded:
            logger.warning("job %s: lease lost before its success was recorded", job.id)

    async def _commit_successes(self) -> None:
        while self._successes:
            batch = self._successes[:MAX_COMMIT_BATCH]
            del self._successes[:MAX_COMMIT_BATCH]
            try:
                await self._commit_batch(batch)
            except Exception:
                # One bad effect must not sink the batch: again, one transaction each.
                for success in batch:
                    try:
                        await self._commit_batch([success])
                    except Exception as exc:
                        if not success.recorded.done():
                            success.recorded.set_exception(exc)

    async def _commit_batch(self, batch: list[_Success]) -> None:
        async with self._engine.begin() as conn, one_outbox_write(conn):
            held = await mark_succeeded(
                conn, [success.job.id for success in batch], worker_id=self.worker_id
            )
            # A job whose lease was taken over leaves no trace: its effects are dropped.
            await apply_effects(
                conn, [s.effects for s in batch if s.job.id in held and s.effects is not None]
            )
        for success in batch:
            if success.job.id in held:
                record_job(success.job.kind, "succeeded")
            if not success.recorded.done():
                success.recorded.set_result(success.job.id in held)

    async def _after_error(self, job: ClaimedJob, exc: Exception) -> None:
        message = describe_error(exc)
        if is_unavailable(exc):
            await self._wait_for_dependency(job, message, requested_delay_s(exc))
            return
        unexpected = message.startswith("Unexpected error")
        if job.is_last_attempt or is_permanent(exc):
            logger.error(
                "job %s (%s) failed after %d attempt(s): %s",
                job.id,
                job.kind,
                job.attempts,
                message,
                exc_info=exc if unexpected else None,
            )
            await self._fail(job, message)
            return
        delay_s = self._backoff.delay_s(job.attempts)
        logger.warning(
            "job %s (%s) attempt %d/%d failed: %s; retrying in %.1fs",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
            message,
            delay_s,
            exc_info=exc if unexpected else None,
        )
        self._finishing.add(job.id)
        async with self._engine.begin() as conn:
            retried = await schedule_retry(
                conn, job, worker_id=self.worker_id, error=message, delay_s=delay_s
            )
        if retried:
            record_job(job.kind, "retried")
            self._wake_after(delay_s)

    async def _wait_for_dependency(
        self, job: ClaimedJob, message: str, asked_s: float | None
    ) -> None:
        now = utc_now()
        waited_s = (now - (job.unavailable_since or now)).total_seconds()
        if waited_s >= self._retry_window_s:
            logger.error("job %s (%s) gave up after %.0fs: %s", job.id, job.kind, waited_s, message)
            await self._fail(job, gave_up(message, waited_s))
            return
        delay_s = self._backoff.wait_s(waited_s, asked_s=asked_s)
        logger.warning(
            "job %s (%s) waits for a dependency (%s); trying again in %.1fs",
            job.id,
            job.kind,
            message,
            delay_s,
        )
        self._finishing.add(job.id)
        async with self._engine.begin() as conn:
            deferred = await defer_job(
                conn, job, worker_id=self.worker_id, error=message, delay_s=delay_s, now=now
            )
            if deferred:
                await documents_requeued(conn, [job])
        if deferred:
            record_job(job.kind, "deferred")
            self._wake_after(delay_s)

    def _wake_after(self, delay_s: float) -> None:
        # A job put off by this worker is due then; no NOTIFY says so, and the fallback poll
        # may be further away.
        asyncio.get_running_loop().call_later(delay_s, self._wake.set)

    async def _fail(self, job: ClaimedJob, message: str) -> None:
        self._finishing.add(job.id)
        failure_effects = FAILURE_EFFECTS.get(job.kind)
        async with self._engine.begin() as conn:
            if not await mark_failed(conn, job, worker_id=self.worker_id, error=message):
                return
            if failure_effects is not None:
                await failure_effects(self._ctx, job, message)(conn)
        record_job(job.kind, "failed")


async def _finish_or_cancel(
    tasks: set[asyncio.Task[None]], grace_s: float
) -> set[asyncio.Task[None]]:
    """Wait up to `grace_s` for `tasks`, then cancel the rest; returns those cancelled."""
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace_s))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=RELEASE_TIMEOUT_S)
    return pending
