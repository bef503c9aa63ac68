"""The bundled reset email in headless Chromium: readable at 320 px, in light and dark mode."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mailreset import MessageBuilder

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("MAILRESET_SCREENSHOTS")  # a folder to keep screenshots in, if set

# WCAG 2 contrast ratio of the computed text colour against the nearest opaque background.
CONTRAST = """(element) => {
  const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const [R, G, B] = [r, g, b].map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  let node = element, background = null;
  while (node && node.nodeType === 1) {
    const value = getComputedStyle(node).backgroundColor;
    const parts = rgb(value);
    if (parts.length === 3 || parts[3] > 0) { background = parts.slice(0, 3); break; }
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


class _Recorder(BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = b"<!DOCTYPE html><title>reset form</title><h1>Choose a password</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on the recorded paths instead."""


@pytest.fixture
def reset_site() -> Iterator[tuple[str, list[str]]]:
    """A local http.server standing in for the app's reset page: (base URL, paths asked)."""
    paths: list[str] = []
    handler = type("Handler", (_Recorder,), {"paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def reset_html(url: str, locale: str | None = None) -> str:
    builder = MessageBuilder(sender="Acme <no-reply@acme.example>", locale=locale)
    message = builder.build(
        "reset_password",
        to="bob@example.com",
        context={"url": url, "expires_minutes": 10, "app_name": "Acme", "user_name": "Bob"},
    )
    part = message.get_body(("html",))
    assert part is not None
    html = part.get_content()
    assert isinstance(html, str)
    return html


def test_reset_email_at_320px_shows_a_clickable_link(
    page: Page, reset_site: tuple[str, list[str]], tmp_path: Path
) -> None:
    """At 320 px the button is visible, fits, and clicking it opens the reset URL."""
    base, paths = reset_site
    url = f"{base}/reset/eyJ0eXAiOiJKV1QifQ.payload-with-a-long-token-{'x' * 120}.sig"
    page.set_viewport_size({"width": 320, "height": 720})
    page.set_content(reset_html(url))

    page.screenshot(path=str(tmp_path / "reset_password_320.png"), full_page=True)
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "reset_password_320.png"), full_page=True)
    button = page.get_by_role("link", name="Choose a new password")
    box = button.bounding_box()
    overflow = page.evaluate("document.documentElement.scrollWidth")
    with page.expect_popup() as popup_info:  # the links open in a new tab (target=_blank)
        button.click()
    popup = popup_info.value
    popup.wait_for_load_state()

    assert (tmp_path / "reset_password_320.png").stat().st_size > 0
    assert button.is_visible()
    assert box is not None
    assert 0 <= box["x"]
    assert box["x"] + box["width"] <= 320
    assert 320 >= overflow  # nothing wider than the screen: no sideways scrolling
    assert url == popup.url
    assert "Choose a password" == popup.locator("h1").inner_text()
    assert [url.removeprefix(base)] == [path for path in paths if path != "/favicon.ico"]
    assert page.get_by_text("Your link to choose a new password.").is_visible()  # preheader


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("locale", [None, "zh_Hans"])
def test_reset_email_text_keeps_its_contrast_in_light_and_dark_mode(
    browser: Browser, scheme: str, locale: str | None, tmp_path: Path
) -> None:
    """Every paragraph and the button keep a WCAG AA contrast (4.5:1) in both colour schemes."""
    context = browser.new_context(
        color_scheme=scheme,  # type: ignore[arg-type]
        viewport={"width": 320, "height": 720},
    )
    try:
        page = context.new_page()
        page.set_content(reset_html("https://acme.example/reset/t0k", locale))
        for folder in filter(None, [str(tmp_path), SHOTS]):
            page.screenshot(path=f"{folder}/reset_{scheme}_{locale}.png", full_page=True)
        elements = page.locator("p, a, h1").all()
        ratios = [round(element.evaluate(CONTRAST), 1) for element in elements]
    finally:
        context.close()

    assert len(ratios) >= 6
    assert [] == [ratio for ratio in ratios if ratio < 4.5]
