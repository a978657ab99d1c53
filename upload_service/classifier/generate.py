"""Regenerate the gRPC stubs in `v1/` from `classifier.proto`.

Run from the repository root, with the dev dependencies installed (grpcio-tools, mypy-protobuf):

    python -m upload_service.classifier.generate

It writes `classifier_pb2.py` and `classifier_pb2.pyi` (messages, protoc's own `--pyi_out`),
`classifier_pb2_grpc.py` (service) and `classifier_pb2_grpc.pyi` (typed stub and servicer, from
mypy-protobuf's `protoc-gen-mypy_grpc`, because grpcio-tools types only the messages). The
generated `_pb2_grpc` modules import `classifier_pb2` as a top-level module; that import is
rewritten to a relative one so the stubs work as the package `upload_service.classifier.v1`, and
the `.pyi` files get a header that keeps ruff off them.
A test regenerates into a temporary folder and fails when the committed stubs differ.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_FILE = PACKAGE_DIR / "classifier.proto"
STUB_DIR = PACKAGE_DIR / "v1"
GENERATED_FILES = (
    "classifier_pb2.py",
    "classifier_pb2.pyi",
    "classifier_pb2_grpc.py",
    "classifier_pb2_grpc.pyi",
)
_TOP_LEVEL_IMPORT = re.compile(r"^import classifier_pb2 as (\w+)$", re.MULTILINE)
# pyproject keeps ruff off `*_pb2*.py`, a pattern the `.pyi` stubs do not match; these lines do it.
_STUB_HEADER = "# ruff: noqa\n# fmt: off\n"


def generate(out_dir: Path = STUB_DIR) -> list[Path]:
    """Generate the stubs into `out_dir` and return the paths written."""
    # Imported here so the runtime package never needs grpcio-tools, a dev dependency.
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PACKAGE_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={_mypy_grpc_plugin()}",
        str(PROTO_FILE),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO_FILE}")
    paths = [out_dir / name for name in GENERATED_FILES]
    for path in paths:
        text = _TOP_LEVEL_IMPORT.sub(
            r"from . import classifier_pb2 as \1", path.read_text(encoding="utf-8")
        )
        if path.suffix == ".pyi":
            text = _STUB_HEADER + text
        path.write_text(text, encoding="utf-8")
    return paths


def _mypy_grpc_plugin() -> Path:
    # protoc runs plugins as executables; prefer the one beside this interpreter (the venv).
    beside = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if beside.exists():
        return beside
    found = shutil.which("protoc-gen-mypy_grpc")
    if found is None:
        raise RuntimeError("protoc-gen-mypy_grpc not found: pip install mypy-protobuf")
    return Path(found)


def main() -> None:
    """Regenerate the committed stubs."""
    for path in generate():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
