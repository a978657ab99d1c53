"""Lifespan: resources open in order, close in reverse, and a failed start closes what it built."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.fixtures.app import MakeSettings, running_app
from upload_service.lifespan import Resources, open_resources
from upload_service.main import create_app


async def test_resources_close_in_reverse_order(make_settings: MakeSettings) -> None:
    resources = Resources(settings=make_settings())
    async with open_resources(resources.settings, into=resources):
        assert resources.sessions is not None
        assert resources.http is not None
        assert not resources.http.is_closed
    assert resources.closed == [
        "rate_limits",
        "classifier",
        "storage",
        "http",
        "wakeups",
        "database reader",
        "database",
    ]
    assert resources.http.is_closed


async def test_failed_start_closes_what_was_already_built(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    # Storage is step 3: a storage root that is a file cannot be opened.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    resources = Resources(settings=make_settings(local_storage_dir=blocker / "storage"))
    with pytest.raises(NotADirectoryError):
        async with open_resources(resources.settings, into=resources):
            pytest.fail("start-up should not have succeeded")
    assert resources.closed == ["http", "wakeups", "database reader", "database"]
    assert resources.http is not None
    assert resources.http.is_closed


async def test_app_publishes_resources_on_state(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    async with running_app(app):
        assert isinstance(app.state.resources, Resources)
        assert app.state.resources.storage is not None


async def test_start_up_objects_are_frozen_for_the_apps_life(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        # Full collections no longer rescan what start-up built.
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
