"""`GET /v1/events` against real processes: a web process and a separate worker process on one
PostgreSQL; the stream sees the worker's changes, replays after a reconnect without gaps or
duplicates, shows only the caller's documents, resets past retention, caps streams per user
(across server processes too, where a killed one's streams stop counting after their lease) and
ends at once on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.gunicorn import GRACEFUL_TIMEOUT_S, gunicorn_argv, gunicorn_env, wait_for_log
from tests.e2e.sse import Event, EventReader
from tests.e2e.test_graceful_shutdown import STARTED
from tests.e2e.test_workers import WorkerProcesses
from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken, server_env
from tests.samples import TEXTS, pdf_bytes

pytestmark = pytest.mark.e2e

StartServer = Callable[..., LiveServer]


@pytest.fixture
def settings_env(database_env: dict[str, str], pg_clean: object, tmp_path: Path) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        **database_env,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
        "JWT_SECRET": TEST_SECRET,
        "WORKER_ENABLED": "false",
        "JANITOR_INTERVAL_S": "0",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def worker(settings_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcesses]:
    env = server_env(settings_env)
    for name in ("NOTIFICATION_URL", "CLASSIFIER_TARGET"):
        env.pop(name, None)
    processes = WorkerProcesses(env, tmp_path)
    yield processes
    processes.stop_all()


@asynccontextmanager
async def open_stream(
    server: LiveServer, token: str, last_event_id: str | None = None
) -> AsyncIterator[EventReader]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10.0, read=30.0)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=timeout) as client,
        client.stream("GET", "/v1/events", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response)


async def upload(server: LiveServer, token: str, text: str = "invoice") -> str:
    content = pdf_bytes(TEXTS[text][0])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            "/v1/documents",
            files={"file": ("a.pdf", content, "application/pdf")},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 202, response.text
    return str(response.json()["doc_id"])


async def events_until_complete(reader: EventReader, doc_id: str) -> list[Event]:
    seen: list[Event] = []
    while True:
        event = await reader.next(15)
        assert event is not None, f"stream ended early after {seen}"
        seen.append(event)
        if event.data.get("doc_id") == doc_id and event.data.get("status") == "complete":
            return seen


async def test_stream_on_the_web_process_sees_the_worker_process_complete_the_document(
    live_server: StartServer,
    worker: WorkerProcesses,
    settings_env: dict[str, str],
    make_token: MakeToken,
) -> None:
    server = live_server(settings_env)
    worker.start()
    alice, bob = make_token("alice"), make_token("bob")
    async with open_stream(server, alice) as alice_stream, open_stream(server, bob) as bob_stream:
        alice_doc = await upload(server, alice)
        bob_doc = await upload(server, bob)
        alice_events = await events_until_complete(alice_stream, alice_doc)
        bob_events = await events_until_complete(bob_stream, bob_doc)

    # Each change is one event, in order, and only the caller's own.
    assert [(e.event, e.data["doc_id"], e.data["status"]) for e in alice_events] == [
        ("document.updated", alice_doc, status) for status in ("queued", "processing", "complete")
    ]
    assert {e.data["doc_id"] for e in bob_events} == {bob_doc}
    assert alice_events[-1].data["classification"]["label"] == "invoice"
    ids = [int(e.id or 0) for e in alice_events]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3

    # The document in the event is the one GET /v1/documents/{doc_id} shows.
    async with httpx.AsyncClient(base_url=server.url) as client:
        shown = await client.get(
            f"/v1/documents/{alice_doc}", headers={"Authorization": f"Bearer {alice}"}
        )
    assert shown.json() == alice_events[-1].data


async def test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    live_server: StartServer,
    worker: WorkerProcesses,
    settings_env: dict[str, str],
    make_token: MakeToken,
) -> None:
    server = live_server(settings_env)
    worker.start()
    alice = make_token("alice")
    async with open_stream(server, alice) as stream:
        first_doc = await upload(server, alice)
        first = await stream.next(15)
    assert first is not None
    assert first.data["status"] == "queued"
    # Disconnected after the first event; the document goes on changing meanwhile, and another
    # one is uploaded while no stream is open.
    second_doc = await upload(server, alice, "receipt")
    await asyncio.sleep(1.0)
    expected = [(first_doc, "processing"), (first_doc, "complete")] + [
        (second_doc, status) for status in ("queued", "processing", "complete")
    ]
    async with open_stream(server, alice, last_event_id=first.id) as stream:
        replayed: list[Event] = []
        while len(replayed) < len(expected):
            event = await stream.next(15)
            assert event is not None
            replayed.append(event)
        # Nothing more: no event twice.
        assert await stream.quiet_for(1.0)
    pairs = [(e.data["doc_id"], e.data["status"]) for e in replayed]
    # The first document's rest and the second's whole life, each once; order holds per doc.
    assert sorted(pairs) == sorted(expected)
    for doc in (first_doc, second_doc):
        statuses = [status for doc_id, status in pairs if doc_id == doc]
        assert statuses == ["queued", "processing", "complete"][-len(statuses) :]
    ids = [int(e.id or 0) for e in replayed]
    assert ids == sorted(ids)
    assert int(first.id or 0) < ids[0]


async def test_a_missed_event_older_than_retention_means_reset_and_a_deletion_is_an_event(
    live_server: StartServer, settings_env: dict[str, str], make_token: MakeToken
) -> None:
    server = live_server({**settings_env, "EVENTS_RETENTION_S": "1"})
    alice = make_token("alice")
    async with open_stream(server, alice) as stream:
        doc_id = await upload(server, alice)
        queued = await stream.next(10)
    assert queued is not None
    # Missed while disconnected, and then forgotten: past retention, it cannot be replayed.
    await upload(server, alice)
    await asyncio.sleep(1.5)
    async with open_stream(server, alice, last_event_id=queued.id) as stream:
        reset = await stream.next(10)
        assert reset is not None
        assert reset.event == "reset"
        assert reset.data == {}
        async with httpx.AsyncClient(base_url=server.url) as client:
            deleted = await client.delete(
                f"/v1/documents/{doc_id}", headers={"Authorization": f"Bearer {alice}"}
            )
        assert deleted.status_code == 204
        gone = await stream.next(10)
    assert gone is not None
    assert (gone.event, gone.data) == ("document.deleted", {"doc_id": doc_id})
    # The reset's id replays from there next time: no second reset.
    async with open_stream(server, alice, last_event_id=reset.id) as stream:
        again = await stream.next(10)
    assert again is not None
    assert again.event == "document.deleted"


async def test_streams_past_the_cap_are_429_and_heartbeats_keep_an_idle_stream_open(
    live_server: StartServer, settings_env: dict[str, str], make_token: MakeToken
) -> None:
    server = live_server({**settings_env, "EVENTS_MAX_STREAMS": "2", "EVENTS_HEARTBEAT_S": "0.3"})
    alice = make_token("alice")
    async with open_stream(server, alice) as one, open_stream(server, alice):
        async with httpx.AsyncClient(base_url=server.url) as client:
            refused = await client.get("/v1/events", headers={"Authorization": f"Bearer {alice}"})
            other_user = client.stream(
                "GET", "/v1/events", headers={"Authorization": f"Bearer {make_token('bob')}"}
            )
            async with other_user as bobs:
                assert bobs.status_code == 200
        assert refused.status_code == 429
        assert refused.json()["error_code"] == "TOO_MANY_STREAMS"
        assert await one.quiet_for(1.0)
        assert one.comments >= 2
    # A closed stream frees its place.
    async with open_stream(server, alice), open_stream(server, alice):
        pass


async def stream_status(server: LiveServer, token: str) -> int:
    """The status of a new stream's response (closed at once when it opened)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/v1/events", headers=headers) as response,
    ):
        return response.status_code


async def seconds_until_opens(server: LiveServer, token: str, timeout_s: float) -> float:
    """How long until a new stream of `token` opens on `server` (polled, bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await stream_status(server, token) == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"no stream opened within {timeout_s} s")


async def test_the_cap_holds_across_server_processes_and_a_closed_stream_frees_its_slot(
    live_server: StartServer, settings_env: dict[str, str], make_token: MakeToken
) -> None:
    env = {**settings_env, "EVENTS_MAX_STREAMS": "2"}
    one, two = live_server(env), live_server(env)
    alice, bob = make_token("alice"), make_token("bob")
    async with open_stream(one, alice):
        async with open_stream(one, alice):
            # The cap is reached on one process: the other refuses a third.
            assert await stream_status(two, alice) == 429
            # Another user's streams are counted apart.
            async with open_stream(two, bob), open_stream(two, bob):
                pass
        # A closed stream frees its slot for any process (the server sees the client leave
        # a moment after it closes).
        await seconds_until_opens(two, alice, timeout_s=5)
        async with open_stream(two, alice):
            assert await stream_status(one, alice) == 429


async def test_a_killed_servers_streams_stop_counting_after_their_lease(
    live_server: StartServer, settings_env: dict[str, str], make_token: MakeToken
) -> None:
    lease_s = 3.0
    env = {**settings_env, "EVENTS_MAX_STREAMS": "2", "EVENTS_STREAM_LEASE_S": str(lease_s)}
    doomed, survivor = live_server(env), live_server(env)
    alice = make_token("alice")
    async with AsyncExitStack() as streams:
        # Called last: the killed server's streams end with a broken connection as they close.
        streams.push_async_exit(_ignore_broken_stream)
        for _ in range(2):
            await streams.enter_async_context(open_stream(doomed, alice))
        # Held past a lease by the holder's renewals: still counted.
        await asyncio.sleep(lease_s * 1.5)
        assert await stream_status(survivor, alice) == 429
        doomed.process.kill()
        doomed.process.wait(5)
        killed = time.monotonic()
        # Its leases outlive it (nobody closed the streams)...
        assert await stream_status(survivor, alice) == 429
    # ... until they expire: the user gets their slots back within one lease.
    waited = await seconds_until_opens(survivor, alice, timeout_s=lease_s + 10)
    assert time.monotonic() - killed <= lease_s + 3, waited
    async with open_stream(survivor, alice), open_stream(survivor, alice):
        assert await stream_status(survivor, alice) == 429


async def _ignore_broken_stream(*exc_info: object) -> bool:
    return isinstance(exc_info[1], httpx.HTTPError)


async def test_sigterm_ends_open_streams_at_once_so_gunicorn_drains_quickly(
    live_server: StartServer, settings_env: dict[str, str], tmp_path: Path, make_token: MakeToken
) -> None:
    env = {**settings_env, **gunicorn_env(settings_env["DATABASE_URL"], tmp_path)}
    env.pop("LOG_LEVEL")  # Its start-up lines tell when both workers serve.
    server = live_server(env, argv=gunicorn_argv(workers=2))
    wait_for_log(server.log, STARTED, count=2)
    alice = make_token("alice")
    async with open_stream(server, alice) as one, open_stream(server, alice) as two:
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # Each stream ends without an event, well before the drain's timeout.
        assert await one.next(GRACEFUL_TIMEOUT_S) is None
        assert await two.next(GRACEFUL_TIMEOUT_S) is None
        ended_after = time.monotonic() - signalled
    assert server.process.wait(GRACEFUL_TIMEOUT_S + 5) == 0
    assert ended_after < 3.0, ended_after
    assert time.monotonic() - signalled < GRACEFUL_TIMEOUT_S / 2
