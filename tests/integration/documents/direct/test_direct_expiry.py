"""Nothing left behind: the janitor removes direct uploads never completed, after their expiry
and grace, and staged bytes whose upload ended; an expired upload then answers 410."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.documents.direct.conftest import MIB, DirectBench
from tests.integration.jobs.support import (
    FixedClassifier,
    finished,
    jobs_of,
    running_worker,
    wait_for,
)
from upload_service.db.models import DIRECT_UPLOAD_GRACE, DirectUpload, utcnow
from upload_service.db.session import create_session_factory
from upload_service.jobs.direct_expiry import expire_direct_uploads
from upload_service.jobs.janitor import remove_orphans
from upload_service.storage.budget import BufferBudget
from upload_service.storage.keys import RAW_PREFIX
from upload_service.storage.s3 import S3Storage

HOUR = timedelta(hours=1)


async def expires_at(engine: AsyncEngine, upload_id: str) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(
            select(DirectUpload.expires_at).where(DirectUpload.id == upload_id)
        )


async def test_an_upload_past_its_expiry_and_grace_is_removed_then_answers_410(
    bench: DirectBench, pg_clean: AsyncEngine, moto_server: str
) -> None:
    content = pdf_bytes("Never completed", pad=9 * MIB)
    post_content = pdf_bytes("Never completed either")
    multipart = (await bench.declare("stale.pdf", content)).json()
    [first] = await bench.sign(multipart["upload_id"], [1])
    await bench.put_part(first["url"], content[: 8 * MIB])
    post = (await bench.declare("stale-post.pdf", post_content)).json()
    await bench.post_file(post, post_content)
    live = (await bench.declare("live.pdf", post_content)).json()
    await bench.post_file(live, post_content)
    assert bench.open_multipart_uploads() == 1

    storage = S3Storage(bench.bucket, moto_server, "us-east-1", BufferBudget(64 * MIB))
    try:
        deadline = await expires_at(pg_clean, multipart["upload_id"])
        assert isinstance(deadline, type(utcnow()))
        # Within the grace, nothing goes: a part sent just before expiry may still arrive.
        early = await expire_direct_uploads(
            pg_clean, storage, older_than=HOUR, now=deadline + DIRECT_UPLOAD_GRACE / 2
        )
        assert early.expired == 0
        # "live" was declared later: push its expiry out so only the other two lapse.
        async with pg_clean.begin() as conn:
            await conn.execute(
                update(DirectUpload)
                .where(DirectUpload.id == live["upload_id"])
                .values(expires_at=utcnow() + 10 * HOUR)
            )
        swept = await expire_direct_uploads(
            pg_clean,
            storage,
            older_than=HOUR,
            now=deadline + DIRECT_UPLOAD_GRACE + timedelta(seconds=1),
        )
        assert swept.expired == 2
    finally:
        await storage.aclose()
    assert bench.open_multipart_uploads() == 0
    assert bench.keys() == [live["key"]]
    for upload_id in (multipart["upload_id"], post["upload_id"]):
        gone = await bench.api.get(f"/v1/uploads/direct/{upload_id}", headers=bench.headers)
        assert gone.status_code == 410
        assert gone.json()["error_code"] == "UPLOAD_GONE"
        assert (await bench.complete(upload_id)).status_code == 410
    assert (await bench.complete(live["upload_id"])).status_code == 202


async def test_a_lapsed_upload_is_410_even_before_the_janitor_comes(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Late")
    declared = (await bench.declare("late.pdf", content)).json()
    await bench.post_file(declared, content)
    async with pg_clean.begin() as conn:
        await conn.execute(
            update(DirectUpload)
            .where(DirectUpload.id == declared["upload_id"])
            .values(expires_at=utcnow() - DIRECT_UPLOAD_GRACE - timedelta(seconds=1))
        )
    late = await bench.complete(declared["upload_id"])
    assert late.status_code == 410


async def test_staged_leftovers_of_ended_uploads_go_and_open_ones_stay(
    bench: DirectBench, pg_clean: AsyncEngine, moto_server: str
) -> None:
    content = pdf_bytes("Leftover")
    ended = (await bench.declare("ended.pdf", content)).json()
    await bench.post_file(ended, content)
    pending = (await bench.declare("pending.pdf", content)).json()
    await bench.post_file(pending, content)
    async with pg_clean.begin() as conn:
        # As if its cancel had failed to delete the staged object.
        await conn.execute(
            update(DirectUpload)
            .where(DirectUpload.id == ended["upload_id"])
            .values(state="cancelled")
        )
    storage = S3Storage(bench.bucket, moto_server, "us-east-1", BufferBudget(64 * MIB))
    try:
        young = await expire_direct_uploads(pg_clean, storage, older_than=HOUR)
        assert young.leftovers == 0  # Younger than the orphan age: left alone.
        swept = await expire_direct_uploads(pg_clean, storage, older_than=timedelta(0))
        assert swept.leftovers == 1
        # The janitor's sweep of row-less objects looks under raw/ only: staging is not its.
        orphans = await remove_orphans(pg_clean, storage, older_than=timedelta(0))
        assert orphans.removed == 0
    finally:
        await storage.aclose()
    assert bench.keys() == [pending["key"]]


async def test_the_janitors_abort_of_unfinished_writes_spares_open_direct_uploads(
    bench: DirectBench, moto_server: str
) -> None:
    content = pdf_bytes("Slow but alive", pad=9 * MIB)
    declared = (await bench.declare("slow.pdf", content)).json()
    [first] = await bench.sign(declared["upload_id"], [1])
    await bench.put_part(first["url"], content[: 8 * MIB])
    storage = S3Storage(bench.bucket, moto_server, "us-east-1", BufferBudget(64 * MIB))
    try:
        # What `janitor` runs, with an orphan age of zero: only raw/ is its to abort.
        assert await storage.abort_incomplete_uploads(timedelta(0), RAW_PREFIX) == 0
    finally:
        await storage.aclose()
    assert bench.open_multipart_uploads() == 1


async def test_the_scheduled_janitor_job_expires_lapsed_direct_uploads(
    bench: DirectBench, pg_clean: AsyncEngine, moto_server: str, direct_settings: MakeSettings
) -> None:
    content = pdf_bytes("Forgotten", pad=9 * MIB)
    declared = (await bench.declare("forgotten.pdf", content)).json()
    [first] = await bench.sign(declared["upload_id"], [1])
    await bench.put_part(first["url"], content[: 8 * MIB])
    async with pg_clean.begin() as conn:
        await conn.execute(
            update(DirectUpload)
            .where(DirectUpload.id == declared["upload_id"])
            .values(expires_at=utcnow() - DIRECT_UPLOAD_GRACE - timedelta(seconds=1))
        )
    storage = S3Storage(bench.bucket, moto_server, "us-east-1", BufferBudget(64 * MIB))
    sessions = create_session_factory(pg_clean)
    try:
        async with running_worker(sessions, storage, FixedClassifier(), direct_settings()):
            [job] = await wait_for(
                lambda: jobs_of(sessions, kind="janitor"),
                lambda jobs: len(jobs) == 1 and finished(jobs[0]),
            )
    finally:
        await storage.aclose()
    assert job.status == "succeeded"
    assert bench.open_multipart_uploads() == 0
    gone = await bench.api.get(f"/v1/uploads/direct/{declared['upload_id']}", headers=bench.headers)
    assert gone.status_code == 410
    async with pg_clean.connect() as conn:
        state = await conn.scalar(
            select(DirectUpload.state).where(DirectUpload.id == declared["upload_id"])
        )
    assert state == "expired"
