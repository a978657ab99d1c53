"""prometheus-client's multiprocess files: the directory made ready, dead processes folded away.

With `PROMETHEUS_MULTIPROC_DIR` set, every process writes its values to `<type>_<pid>.db` files
there and a scrape adds up every file. The directory is created by whichever process needs it
first (several may start at once). A process that exits leaves its files behind, and gunicorn
recycles workers (max_requests, crashes), so the master folds a dead worker's counters and
histograms into one accumulated file per type and removes the worker's own: the sums stay the
same while the number of files stays bounded by the live processes. Scrapes and compactions
exclude each other with a lock on the directory, so no scrape counts a dead worker twice or not
at all (a total that drops would look like a counter reset to Prometheus).
"""

from __future__ import annotations

import fcntl
import glob
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Types whose samples add up across processes, so a dead process's values can join one sum.
# (Gauges do not: their live modes are dropped by mark_process_dead; this service has none.)
SUMMED_TYPES = ("counter", "histogram", "summary")
# `counter_dead.db`: the collector reads the type from the name's first part, like a pid file.
ACCUMULATED = "dead"


class MetricsDirectoryError(Exception):
    """The metrics directory cannot be created or written; the message names it."""


def configured_directory() -> str | None:
    """`PROMETHEUS_MULTIPROC_DIR`, or None when metrics stay in this process."""
    return os.environ.get(MULTIPROC_ENV) or None


def ensure_directory(directory: str | None = None) -> str | None:
    """Create the metrics directory if it is missing (safe when many processes race to it)."""
    directory = directory or configured_directory()
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise MetricsDirectoryError(
            f"{MULTIPROC_ENV}={directory}: cannot create it ({exc.strerror})"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MetricsDirectoryError(f"{MULTIPROC_ENV}={directory}: not writable")
    return directory


def clear_directory(directory: str) -> None:
    """Remove every metrics file: a new gunicorn master starts counting from nothing."""
    ensure_directory(directory)
    with _locked(directory, fcntl.LOCK_EX):
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def compact_dead_process(pid: int, directory: str) -> None:
    """Fold a dead process's summed values into the accumulated files and remove its own."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    with _locked(directory, fcntl.LOCK_EX):
        for kind in SUMMED_TYPES:
            dead = os.path.join(directory, f"{kind}_{pid}.db")
            if os.path.exists(dead):
                _fold(dead, os.path.join(directory, f"{kind}_{ACCUMULATED}.db"))


def _fold(dead: str, accumulated: str) -> None:
    totals: defaultdict[str, float] = defaultdict(float)
    for path in (accumulated, dead):
        if os.path.exists(path):
            entries = MmapedDict.read_all_values_from_file(path)  # type: ignore[no-untyped-call]
            for key, value, _timestamp, _position in entries:
                totals[key] += value
    # Written aside under a name no scrape reads (not *.db), then swapped in whole.
    staging = f"{accumulated}.new"
    if os.path.exists(staging):
        os.remove(staging)
    merged = MmapedDict(staging)  # type: ignore[no-untyped-call]
    try:
        for key, value in totals.items():
            merged.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        merged.close()  # type: ignore[no-untyped-call]
    os.replace(staging, accumulated)
    os.remove(dead)


class DirectoryCollector(Collector):
    """Every process's series summed, as prometheus-client's MultiProcessCollector sums them,
    read while no compaction is moving files."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        with _locked(self.directory, fcntl.LOCK_SH):
            files = glob.glob(os.path.join(self.directory, "*.db"))
            metrics = list(MultiProcessCollector.merge(files))  # type: ignore[no-untyped-call]
        yield from metrics


@contextmanager
def _locked(directory: str, operation: int) -> Iterator[None]:
    # flock on the directory itself: nothing to create, and the lock goes with the descriptor,
    # so a process killed while holding it releases it.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, operation)
        yield
    finally:
        os.close(descriptor)
