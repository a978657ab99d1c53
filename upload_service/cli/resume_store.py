"""Where `upload-service upload` remembers the resumable uploads it has not finished.

One small JSON file per user of the machine, in `$UPLOAD_SERVICE_STATE_DIR`, else
`$XDG_STATE_HOME/upload-service`, else `~/.local/state/upload-service`. It maps a file as the
service sees it (server, token subject, absolute path) to the tus upload holding its first bytes,
with the file's size and mtime when that upload began: a file changed since is a new upload.
Every change rewrites the file atomically (a temporary file renamed over it) under an advisory
lock, so neither a Ctrl-C nor two commands at once leave it torn or lose the other's entry.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "UPLOAD_SERVICE_STATE_DIR"
STATE_FILE = "uploads.json"
# The service forgets an unfinished upload a day after its last PATCH by default; an entry this
# old points at nothing any server still holds, so it is dropped on the next write.
MAX_ENTRY_AGE_S = 30 * 24 * 3600.0


def default_state_dir(environ: Mapping[str, str] = os.environ, home: Path | None = None) -> Path:
    """The state directory: the environment's override, else XDG's state home."""
    if override := environ.get(STATE_DIR_ENV):
        return Path(override)
    xdg = environ.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # The XDG spec says to ignore a relative one.
        return Path(xdg) / "upload-service"
    return (home or Path.home()) / ".local" / "state" / "upload-service"


def token_subject(token: str) -> str:
    """The `sub` claim of a JWT, read without verifying it ("" when unreadable).

    It only keeps two users' entries apart on a shared machine; the server does the verifying.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file as it is on disk now, and whose upload (server and user) it would be."""

    server: str
    subject: str
    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, *, server: str, subject: str) -> LocalFile:
        """Stat `path` now."""
        absolute = path.resolve()
        stat = absolute.stat()
        return cls(server.rstrip("/"), subject, absolute, stat.st_size, stat.st_mtime_ns)

    @property
    def key(self) -> str:
        """The entry's key: a digest, since paths may hold any character."""
        identity = json.dumps([self.server, self.subject, str(self.path)])
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class RememberedUpload:
    """An unfinished upload of a file, and what the file was when it began."""

    upload_url: str
    size: int
    mtime_ns: int

    def is_of(self, file: LocalFile) -> bool:
        """True when the file has not changed since this upload began."""
        return self.size == file.size and self.mtime_ns == file.mtime_ns


def _saved_after(entry: dict[str, Any], cutoff: float) -> bool:
    saved_at = entry.get("saved_at")
    return isinstance(saved_at, int | float) and saved_at >= cutoff


class ResumeStore:
    """The JSON file of unfinished uploads in one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def find(self, file: LocalFile) -> RememberedUpload | None:
        """The upload remembered for this file's path, changed or not (None when there is none)."""
        entry = self._read().get(file.key)
        if not isinstance(entry, dict):
            return None
        try:
            return RememberedUpload(
                str(entry["upload_url"]), int(entry["size"]), int(entry["mtime_ns"])
            )
        except (TypeError, KeyError, ValueError):
            return None

    def remember(self, file: LocalFile, upload_url: str) -> None:
        """Record that `upload_url` holds the start of this file as it is now."""
        with self._locked() as entries:
            entries[file.key] = {
                "upload_url": upload_url,
                "size": file.size,
                "mtime_ns": file.mtime_ns,
                "path": str(file.path),
                "server": file.server,
                "saved_at": time.time(),
            }

    def forget(self, file: LocalFile) -> None:
        """Drop the entry of this file's path (after success, or once the server lost it)."""
        with self._locked() as entries:
            entries.pop(file.key, None)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # A damaged file costs a fresh start of some uploads, never a crash.
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read, let the caller change, and atomically replace the entries under the lock."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.directory / f"{STATE_FILE}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            cutoff = time.time() - MAX_ENTRY_AGE_S
            kept = {
                key: entry
                for key, entry in entries.items()
                if isinstance(entry, dict) and _saved_after(entry, cutoff)
            }
            self._write(kept)

    def _write(self, entries: dict[str, Any]) -> None:
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".uploads-")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                json.dump(entries, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
