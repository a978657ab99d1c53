"""The lock files: resolved from pyproject.toml as it is now, every requirement pinned at a version
it allows, with hashes, and the runtime lock in step with the development one. (Offline.)
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tools.lock import (
    BOOTSTRAP,
    DEV,
    DIGEST_PREFIX,
    LOCKS,
    RUNTIME,
    inputs_digest,
    lock_inputs,
    read_pyproject,
)

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")

Pins = dict[str, set[Version]]


def pins(lock: str) -> Pins:
    """Every version a lock pins, by package (a universal lock may pin two, per Python)."""
    found: defaultdict[str, set[Version]] = defaultdict(set)
    for line in (REPO / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])].add(Version(match[2]))
    return dict(found)


def requirements(lock: str) -> list[Requirement]:
    """The requirements `lock` was resolved from."""
    return [
        Requirement(line)
        for line in lock_inputs(read_pyproject(), lock)
        if not line.startswith(("python ", "["))
    ]


@pytest.mark.parametrize("lock", LOCKS)
def test_each_lock_was_resolved_from_pyproject_as_it_is_now(lock: str) -> None:
    header = (REPO / lock).read_text().splitlines()[:3]
    recorded = [
        line.removeprefix(DIGEST_PREFIX) for line in header if line.startswith(DIGEST_PREFIX)
    ]
    assert recorded == [inputs_digest(read_pyproject(), lock)], (
        f"pyproject.toml's dependencies changed since {lock} was made: run `make lock`"
    )


@pytest.mark.parametrize("lock", LOCKS)
def test_each_requirement_is_pinned_at_a_version_it_allows(lock: str) -> None:
    locked = pins(lock)
    for requirement in requirements(lock):
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement} is not in {lock}: run `make lock`"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {requirement.name} {version}, outside {requirement}"
            )


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_carries_its_hashes(lock: str) -> None:
    # pip's --require-hashes refuses a lock with one hash missing; say which, before it does.
    lines = (REPO / lock).read_text().splitlines()
    for index, line in enumerate(lines):
        if PIN.match(line):
            assert line.endswith("\\"), line
            assert "--hash=sha256:" in lines[index + 1], line


def test_the_locks_agree_on_every_version_they_share() -> None:
    development = pins(DEV)
    runtime = pins(RUNTIME)
    assert set(runtime) <= set(development)
    for lock in (RUNTIME, BOOTSTRAP):
        locked = pins(lock)
        shared = set(locked) & set(development)
        assert {name: locked[name] for name in shared} == {
            name: development[name] for name in shared
        }
