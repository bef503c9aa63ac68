"""The whole reset in headless Chromium, for the FastAPI and the Django example.

FastAPI runs under uvicorn, Django under a threaded WSGI server, each on a free loopback port
and mailing the real ``smtp_sink``; both mail a welcome at sign-up.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mailreset.testing import SMTPSink
from tests.browser.test_reset_e2e import EMAIL
from tests.examples.support import NEW_PASSWORD, PASSWORD, example_config

if TYPE_CHECKING:
    from playwright.sync_api import Page

if all(importlib.util.find_spec(name) for name in ("django", "pytest_django")):
    from tests.examples.test_django_app import configure_for_tests

    # At collection, not in a fixture: pytest-django's session fixtures look once, early.
    configure_for_tests()
    # Playwright's sync API keeps an event loop set in the main thread for the whole session,
    # which Django takes for an async context; the database calls of the test database's setup
    # and flush there are plain synchronous ones (what Playwright's docs advise for Django).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def fastapi_site(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[str]:
    """The FastAPI example under uvicorn; yields its base URL."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from examples.fastapi_app.app import create_app

    from tests.examples.asgi_support import bound_socket, serve_asgi

    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(example_config(tmp_path, smtp_sink, base + "/reset/{token}"))
    with serve_asgi(app, sock) as url:
        yield url


@pytest.fixture
def django_site(request: pytest.FixtureRequest, smtp_sink: SMTPSink) -> Iterator[str]:
    """The Django example under werkzeug's threaded WSGI server; yields its base URL."""
    pytest.importorskip("django")
    pytest.importorskip("pytest_django")
    from django.core.handlers.wsgi import WSGIHandler
    from werkzeug.serving import make_server

    from tests.examples.test_django_app import settle, use_example_settings

    server = make_server("127.0.0.1", 0, WSGIHandler(), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    use_example_settings(request.getfixturevalue("settings"), smtp_sink, base + "/reset/{token}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        settle()


# Committed rows (transaction=True): the server's request threads have connections of their own.
@pytest.fixture(
    params=["fastapi", pytest.param("django", marks=pytest.mark.django_db(transaction=True))]
)
def served(request: pytest.FixtureRequest) -> Any:
    """The example app named by the parameter, served on 127.0.0.1; its base URL."""
    return request.getfixturevalue(f"{request.param}_site")


def _flash(page: Page, text: str) -> None:
    """Wait (Playwright's default timeout) until a flashed message with ``text`` shows."""
    page.locator(".flash", has_text=text).wait_for()


def _log_in(page: Page, base: str, password: str, expected: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", EMAIL)
    page.fill("#password", password)
    page.click("button[type=submit]")
    _flash(page, expected)


@pytest.mark.browser
def test_whole_reset_in_a_browser(page: Page, served: str, smtp_sink: SMTPSink) -> None:
    """Sign up (welcome mail), log out, forgot password, mail link, new password; the old
    password and the used link die."""
    base = served
    page.goto(base + "/signup")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    _flash(page, "Account created")
    [welcome] = smtp_sink.wait_for(1)
    assert (EMAIL,) == welcome.envelope_to
    smtp_sink.clear()
    _log_in(page, base, PASSWORD, "Logged in as")
    page.click("#logout")
    _flash(page, "Logged out")

    page.goto(base + "/login")
    page.click("text=Forgot password?")
    page.fill("#email", EMAIL.lower())
    page.click("button[type=submit]")
    _flash(page, "If an account exists")
    [message] = smtp_sink.wait_for(1)
    [link] = [link for link in message.links if link.startswith(base + "/reset/")]

    reply = page.goto(link)
    assert reply is not None
    first = reply.request  # Django answers the link with a redirect to a form without token
    while first.redirected_from is not None:
        first = first.redirected_from
    answer = first.response()
    assert answer is not None
    assert "no-referrer" == answer.headers.get("referrer-policy")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("button[type=submit]")
    _flash(page, "Your password was changed")
    assert [(EMAIL,)] == [m.envelope_to for m in smtp_sink.wait_for(2)[1:]]

    _log_in(page, base, NEW_PASSWORD, "Logged in as")
    page.click("#logout")
    _flash(page, "Logged out")
    page.goto(link)
    _flash(page, "already used")
    _log_in(page, base, PASSWORD, "Wrong email or password")
