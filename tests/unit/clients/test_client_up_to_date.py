"""The committed client is what the generator makes from today's public document."""

from __future__ import annotations

import difflib
from pathlib import Path

from clients.generate import CLIENTS, generate

# What tools leave beside the sources; not part of the generated client.
LITTER = {"__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache", "build", "dist"}


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not LITTER & set(path.parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    }


def test_regenerating_the_client_changes_nothing(tmp_path: Path) -> None:
    generate(tmp_path)
    committed = {
        name: body
        for name, body in files(CLIENTS).items()
        if name.startswith("python/") or name == "openapi.json"
    }
    fresh = files(tmp_path)
    stale = sorted(
        name for name in committed.keys() | fresh.keys() if committed.get(name) != fresh.get(name)
    )
    diff = (
        "".join(
            difflib.unified_diff(
                committed.get(stale[0], b"").decode(errors="replace").splitlines(keepends=True),
                fresh.get(stale[0], b"").decode(errors="replace").splitlines(keepends=True),
                n=2,
            )
        )[:3000]
        if stale
        else ""
    )
    assert not stale, f"run `python -m clients.generate` and commit; out of date: {stale}\n{diff}"
