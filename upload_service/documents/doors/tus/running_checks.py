"""The running checks of uploads this process is serving: one sniff and sha256 across PATCHes.

A hash cannot be saved in the database (`hashlib` objects do not serialise), so the check that
ran over an upload's bytes so far lives here, keyed by upload and the offset it has reached.
The next PATCH at that offset continues it; a PATCH at any other offset (served elsewhere in
between, or after a restart) finds none, and the finished object is verified once instead.
Bounded: the least recently used checks are forgotten first (their uploads then verify once).
"""

from __future__ import annotations

from collections import OrderedDict

from upload_service.documents.pipeline.checks import StreamCheck

# A check holds a hash state and, for DOCX, up to a few hundred KiB of the ZIP's tail.
MAX_RUNNING_CHECKS = 128


class RunningChecks:
    """upload id → (the check over its first `offset` bytes, `offset`)."""

    def __init__(self, capacity: int = MAX_RUNNING_CHECKS) -> None:
        self._capacity = capacity
        self._checks: OrderedDict[str, StreamCheck] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> StreamCheck | None:
        """The check that covers exactly the first `offset` bytes, handed over (not shared)."""
        check = self._checks.pop(upload_id, None)
        if check is None or check.size != offset:
            return None
        return check

    def keep(self, upload_id: str, check: StreamCheck) -> None:
        """Keep a check for the next PATCH of the upload (at offset `check.size`)."""
        self._checks[upload_id] = check
        self._checks.move_to_end(upload_id)
        while len(self._checks) > self._capacity:
            self._checks.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        """Drop the upload's check (it finished, failed or was terminated)."""
        self._checks.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self._checks)
