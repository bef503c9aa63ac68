"""The whole reset in headless Chromium, for the Flask and the Bottle example.

Each app is served from a thread on a free loopback port and mails the real ``smtp_sink``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mailreset.testing import SMTPSink
from tests.examples.support import NEW_PASSWORD, PASSWORD, example_config

if TYPE_CHECKING:
    from playwright.sync_api import Page

EMAIL = "Browser.User@example.org"


class _Late:
    """A WSGI app that is filled in once the server knows its port (no free-port race)."""

    app: Callable[..., Any]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.app(environ, start_response)


@pytest.fixture(params=["flask", "bottle"])
def served(request: pytest.FixtureRequest, tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[str]:
    """The example app named by the parameter, served on 127.0.0.1; yields its base URL."""
    pytest.importorskip(request.param)
    from werkzeug.serving import make_server

    late = _Late()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    config = example_config(tmp_path, smtp_sink, base + "/reset/{token}")
    if request.param == "flask":
        from examples.flask_app.app import create_app as create_flask_app

        flask_app = create_flask_app(config)
        late.app, close = flask_app, flask_app.extensions["mailreset.close"]
    else:
        from examples.bottle_app.app import create_app as create_bottle_app

        bottle_app = create_bottle_app(config)
        late.app, close = bottle_app, bottle_app.close
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        close()


def _flash(page: Page) -> str:
    return " | ".join(page.locator(".flash").all_inner_texts())


def _log_in(page: Page, base: str, password: str) -> str:
    page.goto(base + "/login")
    page.fill("#email", EMAIL)
    page.fill("#password", password)
    page.click("button[type=submit]")
    return _flash(page)


@pytest.mark.browser
def test_whole_reset_in_a_browser(page: Page, served: str, smtp_sink: SMTPSink) -> None:
    """Sign up, log out, forgot password, mail link, new password; old password and link die."""
    base = served
    page.goto(base + "/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert "We have sent a message to that address" in _flash(page)  # new or taken alike
    [welcome] = smtp_sink.wait_for(1)
    assert "Welcome" in welcome.subject
    smtp_sink.clear()
    assert "Logged in as" in _log_in(page, base, PASSWORD)
    page.click("#logout")
    assert "Logged out" in _flash(page)

    page.goto(base + "/login")
    page.click("text=Forgot password?")
    page.fill("#email", EMAIL.lower())
    page.click("button[type=submit]")
    assert "If an account exists" in _flash(page)
    [message] = smtp_sink.wait_for(1)
    [link] = [link for link in message.links if link.startswith(base + "/reset/")]

    reply = page.goto(link)
    assert reply is not None
    assert "no-referrer" == reply.headers.get("referrer-policy")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("button[type=submit]")
    assert "Your password was changed" in _flash(page)
    assert [(EMAIL,)] == [m.envelope_to for m in smtp_sink.wait_for(2)[1:]]

    assert "Logged in as" in _log_in(page, base, NEW_PASSWORD)
    page.click("#logout")
    page.goto(link)
    assert "already used" in _flash(page)
    assert "Wrong email or password" in _log_in(page, base, PASSWORD)
