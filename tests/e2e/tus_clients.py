"""Stock tus clients as processes of their own: tus-js-client under Node, and tuspy.

Each client prints one JSON event a line (see tests/clients/node/tus-upload.mjs and
tests/clients/tuspy_upload.py); `ClientProcess` reads them as they come, so a test can act at a
given point of an upload (kill the server at 40 %), and ends the client by its own pid.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT = REPO / "tests" / "clients" / "node"
NODE_SCRIPT = NODE_CLIENT / "tus-upload.mjs"
TUSPY_SCRIPT = REPO / "tests" / "clients" / "tuspy_upload.py"
CLIENT_TIMEOUT_S = 120.0

Event = dict[str, Any]


def node_argv(
    endpoint: str,
    file: Path,
    token: str,
    *,
    chunk_size: int | None,
    upload_url: str | None = None,
    delay_ms: int = 0,
    retry_delays: list[int] | None = None,
    creation_with_upload: bool = False,
    override_patch_method: bool = False,
) -> list[str]:
    """The command that runs tus-js-client on `file`; `chunk_size=None` sends one big chunk."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "tus-js-client").is_dir():
        raise RuntimeError("Node or tus-js-client is missing: run `make install-dev`")
    argv = [node, str(NODE_SCRIPT), "--endpoint", endpoint, "--file", str(file), "--token", token]
    argv += ["--chunk-size", "Infinity" if chunk_size is None else str(chunk_size)]
    argv += ["--delay-ms", str(delay_ms)]
    if upload_url is not None:
        argv += ["--upload-url", upload_url]
    if retry_delays is not None:
        argv += ["--retry-delays", json.dumps(retry_delays)]
    if creation_with_upload:
        argv.append("--creation-with-upload")
    if override_patch_method:
        argv.append("--override-patch-method")  # POST + X-HTTP-Method-Override: PATCH
    return argv


def tuspy_argv(endpoint: str, file: Path, token: str, *, chunk_size: int) -> list[str]:
    """The command that runs tuspy on `file`, with `Upload-Checksum` on every PATCH."""
    argv = [sys.executable, str(TUSPY_SCRIPT), "--endpoint", endpoint, "--file", str(file)]
    return [*argv, "--token", token, "--chunk-size", str(chunk_size)]


class ClientProcess:
    """One client process this test started; its events, as they arrive."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._stderr = log.open("wb")
        self.process = subprocess.Popen(
            argv, cwd=REPO, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self.events: list[Event] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, deadline: float) -> Event | None:
        """The next event, or None once the client's output ended; fails at the deadline."""
        left = deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(left, 0.0))
        except queue.Empty:
            message = f"client silent past its deadline; events: {self.events[-5:]}"
            raise AssertionError(message) from None
        if line is None:
            return None
        event: Event = json.loads(line)
        self.events.append(event)
        return event

    def wait_for(self, matches: Callable[[Event], bool], timeout_s: float) -> Event:
        """Read events until one matches (the client keeps running)."""
        deadline = time.monotonic() + timeout_s
        while (event := self._next(deadline)) is not None:
            if matches(event):
                return event
        raise AssertionError(f"client ended first: {self.events[-5:]} {self.stderr()}")

    def finish(self, timeout_s: float = CLIENT_TIMEOUT_S) -> int:
        """Read every event until the client exits; its exit code."""
        deadline = time.monotonic() + timeout_s
        while self._next(deadline) is not None:
            pass
        code = self.process.wait(max(deadline - time.monotonic(), 1.0))
        self._stderr.close()
        return code

    def kill(self) -> None:
        """SIGKILL this client (by its own handle) and collect it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._stderr.close()

    def of(self, kind: str) -> list[Event]:
        """The events of one kind, in order."""
        return [event for event in self.events if event["event"] == kind]

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def run_client(argv: list[str], log: Path, timeout_s: float = CLIENT_TIMEOUT_S) -> ClientProcess:
    """Run a client to its end; it must succeed."""
    client = ClientProcess(argv, log)
    try:
        code = client.finish(timeout_s)
    finally:
        client.kill()  # Only if it outlived its deadline.
    assert code == 0, f"client failed: {client.events[-5:]}\n{client.stderr()}"
    assert client.of("success"), client.events[-5:]
    return client
