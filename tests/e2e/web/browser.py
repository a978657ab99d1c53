"""Debian's chromium driven by Playwright: never a browser that Playwright downloads itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "web"
AXE = Path(__file__).resolve().parents[3] / "web" / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(
    user_data_dir: Path, *, width: int = 1100, height: int = 900
) -> Iterator[BrowserContext]:
    """A headless chromium with a fresh profile in `user_data_dir`, closed on exit."""
    if not CHROMIUM.exists():
        raise RuntimeError("Debian's chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": height},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(user_data_dir, ignore_errors=True)


def screenshot(page: Page, name: str) -> Path:
    """Save the page as test-artifacts/web/<name>.png (kept after the run, for a person to see)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_accessibility_violations(page: Page) -> list[str]:
    """What axe-core (run in the page) reports as serious or critical, one line each."""
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, object]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
