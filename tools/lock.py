"""`make lock`: pin every dependency, with its hashes, in the requirements*.lock files.

uv resolves them from PyPI for every platform (`--universal`): requirements.lock from
pyproject.toml's dependencies, requirements-dev.lock with its `dev` extra too, and
requirements-bootstrap.lock with what installs the others (pip) and builds the package itself
(pyproject.toml's build requirements, for `--no-build-isolation`). The development lock comes
first and the others are constrained to it, so they agree on every version they share. Each
lock's header records a digest of what it was resolved from, and a test compares it with
pyproject.toml: a change there without `make lock` fails the suite.

Pins move only where pyproject.toml demands it; `--upgrade` (`make lock UPGRADE=1`) moves every
package to its newest release that fits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEV = "requirements-dev.lock"
RUNTIME = "requirements.lock"
BOOTSTRAP = "requirements-bootstrap.lock"
LOCKS = (DEV, RUNTIME, BOOTSTRAP)  # In the order they are resolved (see above).
DIGEST_PREFIX = "# inputs-sha256: "


def read_pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def lock_inputs(pyproject: dict[str, Any], lock: str) -> list[str]:
    """Everything `lock` is resolved from, in pyproject.toml's words."""
    project = pyproject["project"]
    python = f"python {project['requires-python']}"
    if lock == BOOTSTRAP:
        return [python, "pip", *pyproject["build-system"]["requires"]]
    inputs = [python, *project["dependencies"]]
    if lock == DEV:
        inputs += ["[dev]", *project["optional-dependencies"]["dev"]]
    return inputs


def inputs_digest(pyproject: dict[str, Any], lock: str) -> str:
    """The digest `lock` records in its header."""
    return hashlib.sha256(json.dumps(lock_inputs(pyproject, lock)).encode()).hexdigest()


def _compile(lock: str, pyproject: dict[str, Any], upgrade: bool, scratch: Path) -> None:
    inputs = lock_inputs(pyproject, lock)
    path, output = REPO / lock, scratch / lock
    if path.exists():
        shutil.copy(path, output)  # uv keeps the pins of the file it writes to.
    command = [
        str(Path(sys.executable).with_name("uv")),
        "pip",
        "compile",
        # The bootstrap requirements on stdin; the others from pyproject.toml.
        "-" if lock == BOOTSTRAP else "pyproject.toml",
        *(["--extra=dev"] if lock == DEV else []),
        *([] if lock == DEV else [f"--constraints={DEV}"]),
        *(["--upgrade"] if upgrade else []),
        "--universal",
        f"--python-version={inputs[0].removeprefix('python >=')}",
        "--generate-hashes",
        "--custom-compile-command=make lock",
        "--quiet",
        f"--output-file={output}",
    ]
    stdin = "\n".join(inputs[1:]) + "\n" if lock == BOOTSTRAP else ""
    subprocess.run(command, input=stdin, text=True, cwd=REPO, check=True)
    header, _, body = output.read_text().partition("\n#    make lock\n")
    digest = f"{DIGEST_PREFIX}{inputs_digest(pyproject, lock)}\n"
    text = f"{header}\n#    make lock\n{digest}{body}"
    # Rewritten only when it changes: `make` reinstalls whenever a lock is newer than the venv.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main(argv: list[str]) -> None:
    """Resolve every lock again."""
    pyproject = read_pyproject()
    with tempfile.TemporaryDirectory() as scratch:
        for lock in LOCKS:
            _compile(lock, pyproject, "--upgrade" in argv, Path(scratch))


if __name__ == "__main__":
    main(sys.argv[1:])
