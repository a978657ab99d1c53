"""Run Alembic migrations from code (the CLI, `serve`'s first start, and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

# alembic/ sits beside the package at the top of the repository (and of the container image).
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    """An Alembic config that points at `database_url`."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""
    if database_url.startswith("sqlite"):
        # SQLite creates the file, not the folder it lives in.
        path = database_url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")
