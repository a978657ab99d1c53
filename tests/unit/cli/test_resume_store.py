"""The resume store: one JSON file of unfinished uploads, keyed by server, user and path."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

from upload_service.cli.resume_store import (
    MAX_ENTRY_AGE_S,
    STATE_DIR_ENV,
    LocalFile,
    ResumeStore,
    default_state_dir,
    token_subject,
)

SERVER = "http://127.0.0.1:8000"


def local(path: Path, *, server: str = SERVER, subject: str = "alice") -> LocalFile:
    return LocalFile.of(path, server=server, subject=subject)


def a_file(tmp_path: Path, name: str = "big.pdf", size: int = 100) -> Path:
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    return path


def test_an_upload_is_remembered_across_instances_and_forgotten(tmp_path: Path) -> None:
    file = local(a_file(tmp_path))
    ResumeStore(tmp_path / "state").remember(file, f"{SERVER}/v1/uploads/tus/abc")
    found = ResumeStore(tmp_path / "state").find(file)
    assert found is not None
    assert found.upload_url == f"{SERVER}/v1/uploads/tus/abc"
    assert found.is_of(file)
    ResumeStore(tmp_path / "state").forget(file)
    assert ResumeStore(tmp_path / "state").find(file) is None


def test_the_same_path_from_another_directory_or_with_a_trailing_slash_is_the_same_entry(
    tmp_path: Path,
) -> None:
    path = a_file(tmp_path)
    store = ResumeStore(tmp_path / "state")
    store.remember(local(path), "u1")
    relative = Path(os.path.relpath(path))
    assert store.find(LocalFile.of(relative, server=f"{SERVER}/", subject="alice")) is not None


def test_entries_of_other_users_servers_and_files_are_apart(tmp_path: Path) -> None:
    path, other = a_file(tmp_path), a_file(tmp_path, "other.pdf")
    store = ResumeStore(tmp_path / "state")
    store.remember(local(path), "alice-upload")
    store.remember(local(path, subject="bob"), "bob-upload")
    assert store.find(local(path, server="http://127.0.0.1:9000")) is None
    assert store.find(local(other)) is None
    found = store.find(local(path, subject="bob"))
    assert found is not None
    assert found.upload_url == "bob-upload"
    store.forget(local(path, subject="bob"))
    assert store.find(local(path)) is not None


def test_a_changed_file_no_longer_matches_its_upload(tmp_path: Path) -> None:
    path = a_file(tmp_path)
    store = ResumeStore(tmp_path / "state")
    store.remember(local(path), "u1")
    path.write_bytes(b"y" * 100)  # Same size, new mtime.
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    found = store.find(local(path))
    assert found is not None
    assert not found.is_of(local(path))
    path.write_bytes(b"y" * 101)
    assert not found.is_of(local(path))


def test_the_file_is_private_whole_json_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = ResumeStore(state)
    for index in range(5):
        store.remember(local(a_file(tmp_path, f"f{index}.pdf")), f"u{index}")
    store.forget(local(tmp_path / "f0.pdf"))
    assert sorted(p.name for p in state.iterdir()) == ["uploads.json", "uploads.json.lock"]
    assert stat.S_IMODE((state / "uploads.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    entries = json.loads((state / "uploads.json").read_text())
    assert sorted(entry["upload_url"] for entry in entries.values()) == ["u1", "u2", "u3", "u4"]


def test_a_damaged_file_is_a_fresh_start_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "uploads.json").write_text('{"half": ')
    file = local(a_file(tmp_path))
    store = ResumeStore(state)
    assert store.find(file) is None
    store.remember(file, "u1")
    assert store.find(file) is not None
    (state / "uploads.json").write_text(json.dumps({file.key: {"upload_url": "u1"}}))
    assert store.find(file) is None  # An entry without size and mtime cannot be trusted.


def test_entries_older_than_any_server_keeps_an_upload_are_dropped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = ResumeStore(state)
    old, new = local(a_file(tmp_path, "old.pdf")), local(a_file(tmp_path, "new.pdf"))
    store.remember(old, "u-old")
    entries = json.loads((state / "uploads.json").read_text())
    entries[old.key]["saved_at"] = time.time() - MAX_ENTRY_AGE_S - 60
    (state / "uploads.json").write_text(json.dumps(entries))
    store.remember(new, "u-new")
    assert store.find(old) is None
    assert store.find(new) is not None


def test_the_state_directory_follows_the_override_then_xdg_then_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_state_dir({STATE_DIR_ENV: "/x/state"}, home) == Path("/x/state")
    assert default_state_dir({"XDG_STATE_HOME": "/xdg"}, home) == Path("/xdg/upload-service")
    # The XDG spec says a relative path is invalid and to be ignored.
    assert default_state_dir({"XDG_STATE_HOME": "rel"}, home) == (
        home / ".local" / "state" / "upload-service"
    )
    assert default_state_dir({}, home) == home / ".local" / "state" / "upload-service"


def test_the_token_subject_is_read_without_verifying() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "alice"}).encode()).rstrip(b"=")
    assert token_subject(f"eyJhbGciOiJIUzI1NiJ9.{payload.decode()}.sig") == "alice"
    assert token_subject("not-a-jwt") == ""
    assert token_subject("a.!!!.c") == ""
    no_sub = base64.urlsafe_b64encode(b'{"scope": "x"}').decode()
    assert token_subject(f"h.{no_sub}.s") == ""
