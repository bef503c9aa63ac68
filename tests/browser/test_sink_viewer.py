"""The debug sink's web viewer in headless Chromium: live list, HTML view, no scripts."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from devtools.sink.server import DebugSink

from tests.devtools.support import reset_mail, running_sink, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

HOSTILE_HTML = """
<h1 id="greeting">Hello Ada</h1>
<p><a href="https://app.example.test/reset/tok123">Reset your password</a></p>
<script>
  document.getElementById("greeting").textContent = "script ran";
  try { top.document.title = "pwned"; } catch (error) {}
  try { top.postMessage("pwned", "*"); } catch (error) {}
  fetch("/api/messages", {method: "DELETE"});
</script>
<img src="data:," onerror="document.getElementById('greeting').textContent = 'handler ran'">
"""


@pytest.fixture
def sink() -> Iterator[DebugSink]:
    """A sink on free ports for one browser test."""
    with running_sink() as running:
        yield running


def _send(
    sink: DebugSink, subject: str, html: str | None = None, to: str = "ada@example.test"
) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
        client.send_message(reset_mail(to=to, subject=subject, html=html))


def test_a_sent_message_appears_without_a_reload_and_shows_its_html(
    page: Page, sink: DebugSink
) -> None:
    """The list picks up a new message by itself; opening it shows the HTML part."""
    from playwright.sync_api import expect

    assert sink.web is not None
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.goto(sink.web.url)
    expect(page.locator("#empty")).to_be_visible()
    # The page follows /api/events (one open stream), so the mail below reaches it pushed.
    wait_until(lambda: sink.web is not None and sink.web.open_streams == 1)
    loads = len(navigations)

    _send(sink, "Reset your password")

    row = page.locator("#list li")
    expect(row).to_have_count(1)
    expect(row.locator(".subject")).to_have_text("Reset your password")
    # The From header's display name, not only the envelope sender.
    expect(row.locator(".meta")).to_contain_text("App <noreply@example.test>")
    assert loads == len(navigations), f"the page reloaded: {navigations}"
    row.click()
    frame = page.frame_locator("#html-frame")
    expect(frame.locator("a")).to_have_text("Reset")
    expect(page.locator("#subject")).to_have_text("Reset your password")
    expect(page.locator("#from")).to_have_text("App <noreply@example.test>")
    expect(page.locator("#envelope")).to_have_text("noreply@example.test \u2192 ada@example.test")


def test_the_search_box_filters_the_list_and_live_updates_respect_it(
    page: Page, sink: DebugSink
) -> None:
    """Typing to:/subject: terms narrows the list; a new match appears, a non-match does not."""
    from playwright.sync_api import expect

    assert sink.web is not None
    _send(sink, "Reset your password", to="ada@example.test")
    _send(sink, "Welcome aboard", to="bob@example.test")
    page.goto(sink.web.url)
    rows = page.locator("#list li")
    expect(rows).to_have_count(2)

    page.locator("#search").fill("to:ada subject:reset")

    expect(rows).to_have_count(1)
    expect(rows.locator(".subject")).to_have_text("Reset your password")
    expect(page.locator("#count")).to_have_text("1 message found")

    _send(sink, "Welcome again", to="bob@example.test")
    _send(sink, "Reset your password (again)", to="ada@example.test")

    expect(rows).to_have_count(2)
    expect(rows.locator(".subject")).to_have_text(
        ["Reset your password (again)", "Reset your password"]
    )
    page.locator("#search").fill("to:nobody")
    expect(rows).to_have_count(0)
    expect(page.locator("#empty")).to_have_text("No message matches the search.")
    page.locator("#search").fill("")
    expect(rows).to_have_count(4)


def test_a_script_in_a_message_does_not_run(page: Page, sink: DebugSink) -> None:
    """Script tags and event handlers in a message's HTML never run in the viewer."""
    from playwright.sync_api import expect

    assert sink.web is not None
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(sink.web.url)
    _send(sink, "Hostile", HOSTILE_HTML)
    page.locator("#list li").click()

    frame = page.frame_locator("#html-frame")
    expect(frame.locator("#greeting")).to_have_text("Hello Ada")
    expect(page.locator("#subject")).to_have_text("Hostile")

    assert "mailreset sink" == page.title()
    assert 1 == len(sink.store)
    assert "pwned" not in console


def test_delete_all_empties_the_list(page: Page, sink: DebugSink) -> None:
    """The Delete all button empties the list and the store."""
    from playwright.sync_api import expect

    assert sink.web is not None
    _send(sink, "one")
    _send(sink, "two")
    page.goto(sink.web.url)
    expect(page.locator("#list li")).to_have_count(2)

    page.locator("#delete-all").click()

    expect(page.locator("#list li")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    assert 0 == len(sink.store)
