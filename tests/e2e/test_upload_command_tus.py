"""`upload-service upload` over tus against a real server: resumed after Ctrl-C and restarts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.app import TEST_SECRET, LiveServer, server_env
from tests.integration.documents.conftest import pdf_bytes
from upload_service.edge.auth import mint_token

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "upload_service.cli"]
SERVE = [*CLI, "serve", "--port", "{port}"]
TUS = {"Tus-Resumable": "1.0.0"}
MIB = 1024 * 1024


class Scene:
    """One server, one user, one state directory: runs the command and asks the service."""

    def __init__(self, live_server: Callable[..., LiveServer], pg_url: str, tmp_path: Path):
        self.tmp_path = tmp_path
        self.env = {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            "LOG_FORMAT": "json",
        }
        self.server = live_server(self.env, argv=SERVE)
        self.user = f"cli-{uuid.uuid4().hex[:8]}"
        self.headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, self.user)}"}
        self.state_dir = tmp_path / "state"

    def command(self, *paths: Path, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            *CLI,
            "upload",
            *(str(path) for path in paths),
            "--url",
            self.server.url,
            "--sub",
            self.user,
            "--state-dir",
            str(self.state_dir),
            *extra,
        ]

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self.tmp_path,
            env=server_env(self.env),
            timeout=180,
            check=False,
        )

    def start(self, command: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp_path,
            env=server_env(self.env),
        )

    def entries(self) -> dict[str, dict[str, object]]:
        state_file = self.state_dir / "uploads.json"
        if not state_file.exists():
            return {}
        entries: dict[str, dict[str, object]] = json.loads(state_file.read_text())
        return entries

    def upload_url(self, timeout_s: float = 30.0) -> str:
        """The upload the running command remembered, once it has."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if entries := self.entries():
                (entry,) = entries.values()
                return str(entry["upload_url"])
            time.sleep(0.02)
        raise AssertionError("the command remembered no upload")

    def offset(self, upload_url: str) -> int:
        response = httpx.head(upload_url, headers={**self.headers, **TUS}, timeout=5)
        assert response.status_code == 200, response.status_code
        return int(response.headers["Upload-Offset"])

    def wait_for_offset(self, upload_url: str, at_least: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (offset := self.offset(upload_url)) >= at_least:
                return offset
            time.sleep(0.02)
        raise AssertionError(f"the upload did not reach {at_least} bytes")

    def documents(self) -> list[dict[str, object]]:
        response = httpx.get(f"{self.server.url}/v1/documents", headers=self.headers, timeout=5)
        assert response.status_code == 200
        items: list[dict[str, object]] = response.json()["items"]
        return items

    def patches_logged(self) -> int:
        """PATCHes the server answered so far, from its JSON access lines."""
        count = 0
        for line in self.server.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("method") == "PATCH":
                count += 1
        return count


@pytest.fixture
def scene(live_server: Callable[..., LiveServer], pg_url: str, tmp_path: Path) -> Scene:
    return Scene(live_server, pg_url, tmp_path)


def a_pdf(tmp_path: Path, size: int, name: str = "report.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(pdf_bytes(pad=size))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_above_the_threshold_goes_over_tus_and_the_state_is_cleaned(
    scene: Scene, tmp_path: Path
) -> None:
    path = a_pdf(tmp_path, 12 * MIB)
    result = scene.run(scene.command(path, extra=("--chunk-size", "4MiB")))
    assert result.returncode == 0, result.stderr
    doc_id, status, printed = result.stdout.strip().split("\t")
    assert doc_id.startswith("doc_")
    assert (status, printed) == ("queued", str(path))
    assert "Traceback" not in result.stderr
    assert (scene.state_dir / "uploads.json").exists()  # Only the tus path writes the store...
    assert scene.entries() == {}  # ...and it forgets the upload once the document exists.
    assert scene.patches_logged() == 4  # 12 MiB and a little in chunks of 4 MiB.
    (document,) = scene.documents()
    assert document["doc_id"] == doc_id
    assert document["sha256"] == sha256_of(path)
    assert document["filename"] == "report.pdf"


def test_after_ctrl_c_the_same_command_continues_from_the_servers_offset(
    scene: Scene, tmp_path: Path
) -> None:
    size = 10 * MIB
    chunk = 128 * 1024  # Small chunks make the upload slow enough to interrupt part-way.
    path = a_pdf(tmp_path, size)
    command = scene.command(path, extra=("--chunk-size", "128KiB"))
    first = scene.start(command)
    try:
        upload_url = scene.upload_url()
        scene.wait_for_offset(upload_url, size // 3)
        first.send_signal(signal.SIGINT)  # What Ctrl-C sends.
        _, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    assert first.returncode == 130, stderr
    assert "interrupted: run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert scene.documents() == []
    assert [entry["upload_url"] for entry in scene.entries().values()] == [upload_url]
    held = scene.offset(upload_url)
    assert size // 3 <= held < path.stat().st_size
    patches_before = scene.patches_logged()

    second = scene.run(command)
    assert second.returncode == 0, second.stderr
    resumed = re.search(r"resuming from byte (\d+) of (\d+)", second.stderr)
    assert resumed is not None, second.stderr
    assert int(resumed[1]) >= held
    assert int(resumed[2]) == path.stat().st_size
    # The second run sent the remainder only: as many PATCHes as its chunks, not the whole file's.
    remainder_chunks = -(-(path.stat().st_size - int(resumed[1])) // chunk)
    assert scene.patches_logged() - patches_before <= remainder_chunks + 1
    doc_id, status, _ = second.stdout.strip().split("\t")
    (document,) = scene.documents()
    assert (document["doc_id"], status) == (doc_id, "queued")
    assert document["sha256"] == sha256_of(path)
    assert scene.entries() == {}


def test_a_server_killed_and_restarted_mid_upload_is_ridden_out_by_the_same_run(
    scene: Scene, tmp_path: Path
) -> None:
    size = 10 * MIB
    path = a_pdf(tmp_path, size)
    running = scene.start(scene.command(path, extra=("--chunk-size", "128KiB")))
    restarted: LiveServer | None = None
    try:
        upload_url = scene.upload_url()
        scene.wait_for_offset(upload_url, size // 3)
        os.kill(scene.server.process.pid, signal.SIGKILL)
        scene.server.process.wait(10)
        # The same port, database and storage: a pod restarted in place.
        (tmp_path / "restarted").mkdir()
        restarted = LiveServer(
            [part.replace("{port}", str(scene.server.port)) for part in SERVE],
            server_env(scene.env),
            scene.server.port,
            tmp_path / "restarted",
        )
        restarted.wait_ready()
        stdout, stderr = running.communicate(timeout=120)
        assert running.returncode == 0, stderr
        assert "Traceback" not in stderr
        doc_id, status, _ = stdout.strip().split("\t")
        assert status == "queued"
        (document,) = scene.documents()  # Asked of the restarted server.
        assert document["doc_id"] == doc_id
        assert document["sha256"] == sha256_of(path)
        assert scene.entries() == {}
    finally:
        if running.poll() is None:
            running.kill()
            running.wait(5)
        if restarted is not None:
            restarted.stop()


def test_a_refused_type_shows_the_services_message_and_is_forgotten(
    scene: Scene, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"not a pdf at all " * 1024)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello " * 1024)
    result = scene.run(scene.command(fake, text, extra=("--tus",)))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{fake}\terror\tUNSUPPORTED_FILE_TYPE: ") for line in lines), (
        result.stderr
    )
    assert any(line.startswith(f"{text}\terror\tUNSUPPORTED_FILE_TYPE: ") for line in lines), (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert scene.entries() == {}
    assert scene.documents() == []


@contextlib.contextmanager
def ended(process: subprocess.Popen[str]) -> Iterator[None]:
    """The command this test started is gone after the block, whatever the block did."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_ctrl_c_with_wait_stops_cleanly_while_sending_and_while_waiting(
    scene: Scene, tmp_path: Path
) -> None:
    # No worker runs: the document stays queued, so `--wait` waits until it is interrupted.
    size = 10 * MIB
    path = a_pdf(tmp_path, size)
    command = scene.command(path, extra=("--chunk-size", "128KiB", "--wait"))
    sending = scene.start(command)
    with ended(sending):
        upload_url = scene.upload_url()
        scene.wait_for_offset(upload_url, size // 3)
        sending.send_signal(signal.SIGINT)
        _, stderr = sending.communicate(timeout=30)
    assert sending.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted: run the same command again to resume" in stderr
    assert [entry["upload_url"] for entry in scene.entries().values()] == [upload_url]

    waiting = scene.start(command)
    with ended(waiting):
        deadline = time.monotonic() + 60
        while scene.entries() and time.monotonic() < deadline:
            time.sleep(0.05)  # Forgotten once the document exists: then it waits.
        assert scene.entries() == {}
        time.sleep(0.5)
        assert waiting.poll() is None  # Still waiting for a classification that never comes.
        waiting.send_signal(signal.SIGINT)
        stdout, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert re.search(r"resuming from byte \d+ of \d+", stderr), stderr  # It continued.
    assert stderr.strip().splitlines()[-1] == (
        "interrupted while waiting: the documents above are uploaded"
    )
    doc_id, status, printed = stdout.strip().split("\t")
    (document,) = scene.documents()
    assert (document["doc_id"], status, printed) == (doc_id, "queued", str(path))
    assert document["sha256"] == sha256_of(path)
