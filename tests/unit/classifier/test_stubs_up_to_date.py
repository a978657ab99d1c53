"""The committed gRPC stubs are exactly what `classifier.proto` generates."""

from __future__ import annotations

from pathlib import Path

from upload_service.classifier.generate import GENERATED_FILES, STUB_DIR, generate


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    written = generate(tmp_path)

    assert sorted(path.name for path in written) == sorted(GENERATED_FILES)
    committed = {path.name: STUB_DIR / path.name for path in written}
    stale = [
        path.name
        for path in written
        if not committed[path.name].exists()
        or committed[path.name].read_bytes() != path.read_bytes()
    ]
    assert not stale, (
        f"stale stubs {stale}: run `python -m upload_service.classifier.generate` and commit them"
    )
