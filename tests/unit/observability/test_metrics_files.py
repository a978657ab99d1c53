"""prometheus-client's multiprocess files: the directory is made where needed, and the files of
dead processes are folded into a bounded number while every scrape keeps the same totals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.parser import text_string_to_metric_families

from upload_service.observability.metrics_files import (
    DirectoryCollector,
    MetricsDirectoryError,
    clear_directory,
    compact_dead_process,
    ensure_directory,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(directory: Path) -> Samples:
    """What a scrape of the directory shows, keyed by sample name and labels."""
    registry = CollectorRegistry()
    registry.register(DirectoryCollector(str(directory)))
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def db_files(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*.db")}


@pytest.fixture
def processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Record, as process `pid`, what a worker records: a job counted, a request observed.

    prometheus-client's own hook (`process_identifier`) stands in for real processes: each pid
    writes its own files, exactly as a forked worker would.
    """
    current = {"pid": 1}
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: current["pid"]))
    jobs = Counter("jobs_total", "Jobs", ["kind", "outcome"], registry=None)
    latency = Histogram("latency_seconds", "Latency", buckets=(0.1, 1.0), registry=None)

    def record(pid: int) -> None:
        current["pid"] = pid
        jobs.labels("classify", "succeeded").inc(pid)
        # Binary fractions: their sums are exact in any order, as a scrape's are compared.
        latency.observe(0.25 if pid % 2 else 2.0)

    yield record
    values.close_all_multiprocess_files()


def test_dead_processes_are_folded_into_one_file_per_type_with_the_same_totals(
    processes: Callable[[int], None], tmp_path: Path
) -> None:
    for pid in range(1, 31):
        processes(pid)
    before = scrape(tmp_path)
    assert len(db_files(tmp_path)) == 60

    for pid in range(1, 30):  # Every process but the last one has exited.
        compact_dead_process(pid, str(tmp_path))

    assert db_files(tmp_path) == {
        "counter_30.db",
        "histogram_30.db",
        "counter_dead.db",
        "histogram_dead.db",
    }
    after = scrape(tmp_path)
    assert after == before
    succeeded = frozenset({"kind": "classify", "outcome": "succeeded"}.items())
    assert after[("jobs_total", succeeded)] == sum(range(1, 31))
    assert after[("latency_seconds_count", frozenset())] == 30


def test_a_live_process_keeps_counting_after_others_were_folded(
    processes: Callable[[int], None], tmp_path: Path
) -> None:
    processes(1)
    processes(2)
    compact_dead_process(1, str(tmp_path))
    processes(2)  # The live process goes on in its own file.
    succeeded = frozenset({"kind": "classify", "outcome": "succeeded"}.items())
    assert scrape(tmp_path)[("jobs_total", succeeded)] == 1 + 2 + 2


def test_scrapes_during_compaction_always_see_every_process_once(
    processes: Callable[[int], None], tmp_path: Path
) -> None:
    pids = range(1, 41)
    for pid in pids:
        processes(pid)
    expected = scrape(tmp_path)
    compacting = threading.Thread(
        target=lambda: [compact_dead_process(pid, str(tmp_path)) for pid in pids]
    )
    compacting.start()
    seen = []
    while compacting.is_alive() and len(seen) < 1000:
        seen.append(scrape(tmp_path))
    compacting.join(30)
    assert seen, "compaction ended before any scrape ran"
    assert all(sample == expected for sample in seen)
    assert db_files(tmp_path) == {"counter_dead.db", "histogram_dead.db"}


def test_a_new_run_starts_from_no_files_and_keeps_the_directory(
    processes: Callable[[int], None], tmp_path: Path
) -> None:
    processes(1)
    (tmp_path / "unrelated.txt").write_text("kept")
    clear_directory(str(tmp_path))
    assert db_files(tmp_path) == set()
    assert (tmp_path / "unrelated.txt").exists()


def test_the_directory_is_created_even_when_many_processes_race_to_it(tmp_path: Path) -> None:
    target = tmp_path / "volume" / "metrics"
    start = threading.Barrier(16)
    failures: list[BaseException] = []

    def create() -> None:
        start.wait(5)
        try:
            ensure_directory(str(target))
        except Exception as exc:  # Collected for the assertion below.
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    assert target.is_dir()


def test_a_directory_that_cannot_be_made_is_named_in_the_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(MetricsDirectoryError, match=f"PROMETHEUS_MULTIPROC_DIR={blocker}/metrics"):
        ensure_directory(str(blocker / "metrics"))


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_the_command_stops_with_one_line_when_the_directory_cannot_be_made(
    command: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "upload_service.cli", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"metrics directory error: PROMETHEUS_MULTIPROC_DIR={blocker}/metrics: "
        "cannot create it (Not a directory)"
    ]
