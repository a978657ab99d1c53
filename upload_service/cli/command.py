"""The `upload-service` command."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from upload_service.config import ConfigurationError, Settings, get_settings


def _metrics_directory_ready() -> bool:
    """Create PROMETHEUS_MULTIPROC_DIR if it is set and missing: one clear line if it cannot be.

    Call it before anything imports the metrics, whose series open their files at once.
    """
    from upload_service.observability.metrics_files import MetricsDirectoryError, ensure_directory

    try:
        ensure_directory()
    except MetricsDirectoryError as exc:
        print(f"metrics directory error: {exc}", file=sys.stderr)
        return False
    return True


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if not _metrics_directory_ready():
        return 2
    import uvicorn

    from upload_service.observability.logging_setup import logging_config

    # The app's start-up migrates the embedded database (SQLite) itself, so that every way of
    # starting it does; PostgreSQL waits for `upload-service migrate`.
    uvicorn.run(
        "upload_service.main:app",
        host=args.host,
        port=args.port,
        reload=args.reload,
        # uvicorn's own lines go through our formatter; the app writes the access lines.
        log_config=logging_config(settings.effective_log_format, settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    return 0


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from upload_service.db.migrate import upgrade_to_head

    # The direct connection when DATABASE_URL is a pooler: a migration is session work.
    upgrade_to_head(settings.listen_url)
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from upload_service.edge.auth import mint_token

    if not settings.jwt_secret:
        print("JWT_SECRET: required to mint a token", file=sys.stderr)
        return 2
    print(
        mint_token(
            settings.jwt_secret, args.sub, email=args.email, scopes=args.scope, ttl_s=args.ttl
        )
    )
    return 0


def _openapi(args: argparse.Namespace, settings: Settings) -> int:
    from upload_service.api.openapi import internal_openapi
    from upload_service.main import create_app

    app = create_app(settings)
    document = internal_openapi(app) if args.internal else app.openapi()
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _classifier_server(args: argparse.Namespace, _settings: Settings) -> int:
    from upload_service.classifier.server import run_server

    run_server(args.port, args.host)
    return 0


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(text: str) -> int:
    """A positive size in bytes from `8MiB`, `512KiB`, `1048576` (an argparse type)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 8MiB, 512KiB or 1048576)")
    size = int(float(match[1]) * _UNIT_BYTES[(match[2] or "")[:1].lower()])
    if size < 1:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r}")
    return size


def _upload(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _upload_files(args, settings)
    except KeyboardInterrupt:
        # Caught further in wherever the state is worth a word; anywhere else, no traceback
        # either: the resume store is rewritten atomically, so what it holds stays usable.
        print("interrupted", file=sys.stderr)
        return 130


def _upload_files(args: argparse.Namespace, settings: Settings) -> int:
    from upload_service.cli.resume_store import token_subject
    from upload_service.cli.uploader import TusOptions, upload_files
    from upload_service.edge.auth import mint_token

    token = args.token
    if token is None and settings.jwt_secret:
        token = mint_token(settings.jwt_secret, args.sub)  # Development convenience.
    if token is None:
        print("--token is required (no JWT_SECRET to mint one)", file=sys.stderr)
        return 2
    if args.direct:
        from upload_service.cli.direct_client import upload_direct

        outcomes = upload_direct(
            [Path(p) for p in args.files],
            url=args.url,
            token=token,
            state_dir=args.state_dir,
            wait=args.wait,
            wait_timeout_s=args.wait_timeout,
        )
    else:
        tus = TusOptions(
            mode="auto" if args.tus is None else "always" if args.tus else "never",
            threshold=args.tus_threshold,
            chunk_size=args.chunk_size,
            state_dir=args.state_dir,
            subject=token_subject(token),
        )
        outcomes = upload_files(
            [Path(p) for p in args.files],
            url=args.url,
            token=token,
            wait=args.wait,
            wait_timeout_s=args.wait_timeout,
            tus=tus,
        )
    for outcome in outcomes:
        if outcome.error:
            print(f"{outcome.path}\terror\t{outcome.error}", file=sys.stderr)
        else:
            print(f"{outcome.doc_id}\t{outcome.status}\t{outcome.path}")
    if any(outcome.interrupted for outcome in outcomes):
        if any(outcome.interrupted and outcome.doc_id for outcome in outcomes):
            # Ctrl-C came while waiting for the classification: the documents exist.
            print("interrupted while waiting: the documents above are uploaded", file=sys.stderr)
        return 130  # What a shell reports for a command ended by Ctrl-C.
    return 1 if any(outcome.error or outcome.status == "failed" for outcome in outcomes) else 0


def _worker(_args: argparse.Namespace, settings: Settings) -> int:
    if not _metrics_directory_ready():
        return 2
    import asyncio

    from upload_service.cli.worker_process import run_worker
    from upload_service.observability.logging_setup import configure_logging

    configure_logging(settings.effective_log_format, settings.log_level)
    asyncio.run(run_worker(settings))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the embedded database if needed, then run")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true")
    serve.set_defaults(run=_serve)

    commands.add_parser("migrate", help="alembic upgrade head").set_defaults(run=_migrate)
    commands.add_parser("worker", help="run the job worker alone").set_defaults(run=_worker)

    token = commands.add_parser("token", help="print a development token signed with JWT_SECRET")
    token.add_argument("--sub", required=True)
    token.add_argument("--email")
    token.add_argument("--scope", action="append", default=[])
    token.add_argument("--ttl", type=int, default=3600)
    token.set_defaults(run=_token)

    openapi = commands.add_parser("openapi", help="print the public OpenAPI document")
    openapi.add_argument(
        "--internal", action="store_true", help="the full document, internal routes included"
    )
    openapi.set_defaults(run=_openapi)

    classifier = commands.add_parser("classifier-server", help="serve the reference classifier")
    classifier.add_argument("--host", default="127.0.0.1")
    classifier.add_argument("--port", type=int, default=50051)
    classifier.set_defaults(run=_classifier_server)

    upload = commands.add_parser("upload", help="upload files to a running service")
    upload.add_argument("files", nargs="+")
    upload.add_argument("--url", default="http://127.0.0.1:8000")
    upload.add_argument("--token", help="Bearer token (default: a dev token for --sub)")
    upload.add_argument("--sub", default="cli", help="user of the minted dev token")
    upload.add_argument("--wait", action="store_true", help="wait until each is classified")
    upload.add_argument("--wait-timeout", type=float, default=300.0)
    door = upload.add_mutually_exclusive_group()
    door.add_argument(
        "--tus", dest="tus", action="store_true", default=None, help="always upload resumably (tus)"
    )
    door.add_argument("--no-tus", dest="tus", action="store_false", help="never use tus")
    door.add_argument(
        "--direct", action="store_true", help="send the bytes straight to S3 (presigned)"
    )
    upload.add_argument(
        "--tus-threshold",
        type=byte_size,
        default="8MiB",
        help="files above this size go over tus, resumable (default 8MiB)",
    )
    upload.add_argument(
        "--chunk-size", type=byte_size, default="8MiB", help="bytes per tus PATCH (default 8MiB)"
    )
    upload.add_argument(
        "--state-dir",
        type=Path,
        help="where unfinished uploads (tus, --direct) are remembered (default: "
        "$UPLOAD_SERVICE_STATE_DIR, else $XDG_STATE_HOME/upload-service, else "
        "~/.local/state/upload-service)",
    )
    upload.set_defaults(run=_upload)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, load settings (one clear line when they are wrong), run."""
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    return run(args, settings)
