"""`make lock`: pin every dependency, with its hashes, in requirements.lock and -dev.lock.

uv resolves them from PyPI for every platform (`--universal`), from pyproject.toml and its build
requirements, so that the package itself builds from the lock (`--no-build-isolation`). The
development lock comes first and the runtime one is constrained to it: the two agree on every
version they share. Each lock's header records a digest of what it was resolved from, and a test
compares it with pyproject.toml, so a change there without `make lock` fails the suite.

Pins move only where pyproject.toml demands it; `--upgrade` (`make lock UPGRADE=1`) moves every
package to its newest release that fits.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Lock file, and the extras it installs; the development lock first (see above).
LOCKS = {"requirements-dev.lock": ["dev"], "requirements.lock": []}
DIGEST_PREFIX = "# inputs-sha256: "


def read_pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def build_requirements(pyproject: dict[str, Any]) -> list[str]:
    """What building the package needs (setuptools, wheel)."""
    return list(pyproject["build-system"]["requires"])


def lock_inputs(pyproject: dict[str, Any], extras: list[str]) -> list[str]:
    """Everything a lock with `extras` is resolved from, in pyproject.toml's words."""
    project = pyproject["project"]
    inputs = [
        f"python {project['requires-python']}",
        *build_requirements(pyproject),
        *project["dependencies"],
    ]
    for extra in extras:
        inputs += [f"[{extra}]", *project["optional-dependencies"][extra]]
    return inputs


def inputs_digest(pyproject: dict[str, Any], extras: list[str]) -> str:
    """The digest a lock with `extras` records in its header."""
    encoded = json.dumps(lock_inputs(pyproject, extras)).encode()
    return hashlib.sha256(encoded).hexdigest()


def _compile(lock: str, extras: list[str], pyproject: dict[str, Any], upgrade: bool) -> None:
    python = pyproject["project"]["requires-python"].removeprefix(">=")
    command = [
        str(Path(sys.executable).with_name("uv")),
        "pip",
        "compile",
        "pyproject.toml",
        "-",  # The build requirements, on stdin.
        *(f"--extra={extra}" for extra in extras),
        "--universal",
        f"--python-version={python}",
        "--generate-hashes",
        "--custom-compile-command=make lock",
        "--quiet",
        f"--output-file={lock}",
    ]
    if lock != "requirements-dev.lock":
        command.append("--constraints=requirements-dev.lock")
    if upgrade:
        command.append("--upgrade")
    stdin = "\n".join(build_requirements(pyproject)) + "\n"
    subprocess.run(command, input=stdin, text=True, cwd=REPO, check=True)
    path = REPO / lock
    header, _, body = path.read_text().partition("\n#    make lock\n")
    digest = f"{DIGEST_PREFIX}{inputs_digest(pyproject, extras)}\n"
    path.write_text(f"{header}\n#    make lock\n{digest}{body}")


def main(argv: list[str]) -> None:
    """Resolve both locks again."""
    pyproject = read_pyproject()
    for lock, extras in LOCKS.items():
        _compile(lock, extras, pyproject, upgrade="--upgrade" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
