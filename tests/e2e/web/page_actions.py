"""What a person does on the page, as the browser tests do it: drop files, sign in by keyboard,
find a document's row, wait for the page."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect

from tests.fixtures.app import LiveServer

DROP = """
(files) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, {type: f.type}));
  }
  const zone = document.getElementById('drop-zone');
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
    zone.dispatchEvent(new DragEvent(kind, init));
  }
}
"""


def drop(page: Page, *files: tuple[str, str, bytes]) -> None:
    """Drop files onto the page's drop zone, as a person dragging them from a folder would."""
    page.evaluate(
        DROP,
        [{"name": n, "type": t, "data": base64.b64encode(b).decode()} for n, t, b in files],
    )


def sign_in_by_keyboard(page: Page, server: LiveServer, user: str) -> None:
    """The development sign-in, reached and sent with the keyboard alone."""
    page.goto(server.url)
    expect(page.locator("#dev-form")).to_be_visible()
    for _ in range(12):  # Bounded: the field is a few tab stops away.
        if page.evaluate("document.activeElement && document.activeElement.id") == "dev-user":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "dev-user"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused field shows no focus ring"
    page.keyboard.type(user)
    page.keyboard.press("Enter")
    expect(page.locator("#who-name")).to_have_text(user)
    expect(page.locator("#live")).to_have_text("Live", timeout=5000)


def document_row(page: Page, filename: str) -> Locator:
    return page.locator(f'li.document:has(.name:text-is("{filename}"))')


def wait_until(page: Page, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Let the page run until `condition` holds (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)
