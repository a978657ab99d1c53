"""The `upload-service` command, its upload client and the job worker's process."""

from upload_service.cli.command import main

__all__ = ["main"]
