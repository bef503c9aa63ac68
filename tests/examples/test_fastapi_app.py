"""The FastAPI example under uvicorn on loopback, driven by httpx, mailing smtp_sink."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from examples.fastapi_app.app import create_app  # noqa: E402

from mailreset.testing import SMTPSink, extract_token  # noqa: E402
from tests.examples.asgi_support import serve_asgi  # noqa: E402
from tests.examples.support import NEW_PASSWORD, PASSWORD, example_config  # noqa: E402

RESET_PREFIX = "https://app.example/reset/"
EMAIL = "Ann.Example@example.org"


@pytest.fixture
def app(tmp_path: Path, smtp_sink: SMTPSink) -> Any:
    app = create_app(example_config(tmp_path, smtp_sink, RESET_PREFIX + "{token}"))
    app.state.users.create(EMAIL, PASSWORD)
    return app


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with serve_asgi(app) as url:  # runs the lifespan: mailer made, then closed
        yield url


def _client(base: str) -> Any:
    return httpx.Client(base_url=base, follow_redirects=True, timeout=10)


@pytest.fixture
def browser(base: str) -> Iterator[Any]:
    with _client(base) as client:
        yield client


def _csrf(client: Any, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert match is not None, f"no CSRF field at {path}"
    return match.group(1)


def _submit(client: Any, path: str, **fields: str) -> Any:
    """Post ``fields`` with the form's CSRF token; follow the redirect."""
    return client.post(path, data={"csrf": _csrf(client, path), **fields})


def _log_in(base: str, password: str) -> str:
    with _client(base) as client:
        return str(_submit(client, "/login", email=EMAIL, password=password).text)


def _reset_link(client: Any, smtp_sink: SMTPSink) -> str:
    _submit(client, "/forgot", email=EMAIL.upper())
    [message] = smtp_sink.wait_for(1)
    smtp_sink.clear()
    return "/reset/" + extract_token(message, RESET_PREFIX)


def test_sign_up_mails_a_welcome_and_logs_in_and_out(browser: Any, smtp_sink: SMTPSink) -> None:
    """A new account gets its awaited welcome mail, can log in, and logs out."""
    created = _submit(browser, "/signup", email="new@example.org", password="a good password")
    [welcome] = smtp_sink.messages  # the route awaited the delivery: no waiting here
    logged_in = _submit(browser, "/login", email="new@example.org", password="a good password")
    logged_out = browser.post("/logout", data={"csrf": _csrf(browser, "/")})

    assert "Account created" in created.text
    assert ("new@example.org",) == welcome.envelope_to
    assert "Logged in as new@example.org" in logged_in.text
    assert 'id="logout"' not in logged_out.text


def test_forgot_password_answers_the_same_for_unknown_addresses(
    browser: Any, smtp_sink: SMTPSink
) -> None:
    """Known and unknown addresses get the same redirect; only the known one gets mail."""
    replies = []
    for address in (EMAIL, "nobody@example.org"):
        token = _csrf(browser, "/forgot")
        replies.append(
            browser.post("/forgot", data={"csrf": token, "email": address}, follow_redirects=False)
        )
    [message] = smtp_sink.wait_for(1)

    assert [303, 303] == [reply.status_code for reply in replies]
    assert replies[0].headers["location"] == replies[1].headers["location"]
    assert (EMAIL,) == message.envelope_to


def test_whole_reset_over_http(base: str, browser: Any, smtp_sink: SMTPSink) -> None:
    """Link, new password twice, notice mail, new password works, old one and the link do not."""
    link = _reset_link(browser, smtp_sink)
    page = browser.get(link)
    done = _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    [notice] = smtp_sink.wait_for(1)

    assert ("no-referrer", "no-store") == (
        page.headers["referrer-policy"],
        page.headers["cache-control"],
    )
    assert "Your password was changed" in done.text
    assert (EMAIL,) == notice.envelope_to
    assert "Logged in as" in _log_in(base, NEW_PASSWORD)
    assert "Wrong email or password" in _log_in(base, PASSWORD)
    assert "already used" in browser.get(link).text


def test_different_passwords_change_nothing(base: str, browser: Any, smtp_sink: SMTPSink) -> None:
    """The two new passwords must match; otherwise the old password stays."""
    link = _reset_link(browser, smtp_sink)
    reply = _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD + "x")

    assert "The two passwords differ" in reply.text
    assert "Logged in as" in _log_in(base, PASSWORD)


def test_weak_new_password_is_refused_with_the_reason(browser: Any, smtp_sink: SMTPSink) -> None:
    """The policy's reason shows on the reset page, and the link still works."""
    link = _reset_link(browser, smtp_sink)
    reply = _submit(browser, link, password="password", confirm="password")

    assert "too common" in reply.text
    assert 200 == browser.get(link).status_code


def test_reset_ends_other_sessions(base: str, browser: Any, smtp_sink: SMTPSink) -> None:
    """A browser logged in before the reset is logged out by it."""
    with _client(base) as elsewhere:
        _submit(elsewhere, "/login", email=EMAIL, password=PASSWORD)
        assert 'id="logout"' in elsewhere.get("/").text
        link = _reset_link(browser, smtp_sink)
        _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)

        assert 'id="logout"' not in elsewhere.get("/").text


def test_forms_need_the_csrf_token(app: Any, browser: Any, smtp_sink: SMTPSink) -> None:
    """A POST without the session's CSRF token is refused with 400 and requests nothing."""
    browser.get("/forgot")
    reply = browser.post("/forgot", data={"email": EMAIL, "csrf": "forged"})

    assert 400 == reply.status_code
    assert "pending=0" in repr(app.state.mailreset.flow)
    assert app.state.mailreset.flow.flush(5)
    assert [] == smtp_sink.messages


@pytest.mark.parametrize("token", ["nonsense", "a.b.c", "x" * 5000])
def test_bad_link_sends_back_to_forgot(browser: Any, token: str) -> None:
    """A link with a bad token says so and offers a new one."""
    reply = browser.get(f"/reset/{token}", follow_redirects=False)

    assert "/forgot" == reply.headers["location"]
    assert "not valid" in browser.get("/forgot").text
