"""The Bottle example through WebTest, mailing a real SMTP server (smtp_sink)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

bottle = pytest.importorskip("bottle")
webtest = pytest.importorskip("webtest")

from examples.bottle_app.app import create_app  # noqa: E402

from mailreset.testing import SMTPSink, extract_token  # noqa: E402
from tests.examples.hardening import (  # noqa: E402
    CLIENT_KEY_CASES,
    NON_ASCII_CSRF,
    REMOTE_ADDR,
    SECURE_COOKIE_CASES,
    RecordingLimiter,
    flashes,
)
from tests.examples.support import NEW_PASSWORD, PASSWORD, example_config  # noqa: E402

RESET_PREFIX = "https://app.example/reset/"
EMAIL = "Ann.Example@example.org"


@pytest.fixture
def app(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Any]:
    app = create_app(example_config(tmp_path, smtp_sink, RESET_PREFIX + "{token}"))
    app.config["mailreset.plugin"].users.create(EMAIL, PASSWORD)
    yield app
    app.close()


#: The app is served over HTTPS, as its links say (its session cookie is Secure).
HTTPS = {"wsgi.url_scheme": "https", "HTTP_HOST": "app.example"}


@pytest.fixture
def browser(app: Any) -> Any:
    return webtest.TestApp(app, extra_environ=HTTPS)


def _submit(browser: Any, path: str, **fields: str) -> Any:
    """Fill the first form at ``path`` (its CSRF field included) and follow the redirect."""
    form = browser.get(path).forms[0]
    for name, value in fields.items():
        form[name] = value
    reply = form.submit()
    return reply.follow() if reply.status_int in {302, 303} else reply


def _log_in(app: Any, password: str) -> str:
    browser = webtest.TestApp(app, extra_environ=HTTPS)
    return str(_submit(browser, "/login", email=EMAIL, password=password).text)


def _reset_link(browser: Any, smtp_sink: SMTPSink) -> str:
    _submit(browser, "/forgot", email=EMAIL.upper())
    [message] = smtp_sink.wait_for(1)
    smtp_sink.clear()
    return RESET_PREFIX + extract_token(message, RESET_PREFIX)


def _local(link: str) -> str:
    return link.removeprefix("https://app.example")


def test_sign_up_log_in_and_out(browser: Any) -> None:
    """A new account can log in, sees its address, and logs out."""
    _submit(browser, "/signup", email="new@example.org", password="a good password")
    logged_in = _submit(browser, "/login", email="new@example.org", password="a good password")
    logged_out = logged_in.forms[0].submit().follow()

    assert "Logged in as new@example.org" in logged_in.text
    assert 'id="logout"' not in logged_out.text


def test_forgot_password_answers_the_same_for_unknown_addresses(
    browser: Any, smtp_sink: SMTPSink
) -> None:
    """Known and unknown addresses get the same redirect; only the known one gets mail."""
    replies = []
    for address in (EMAIL, "nobody@example.org"):
        form = browser.get("/forgot").forms[0]
        form["email"] = address
        replies.append(form.submit())
    [message] = smtp_sink.wait_for(1)

    assert replies[0].status_int == replies[1].status_int
    assert replies[0].location == replies[1].location
    assert (EMAIL,) == message.envelope_to


def test_whole_reset_over_http(app: Any, browser: Any, smtp_sink: SMTPSink) -> None:
    """Link, new password twice, notice mail, new password works, old one and the link do not."""
    link = _local(_reset_link(browser, smtp_sink))
    page = browser.get(link)
    done = _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    [notice] = smtp_sink.wait_for(1)

    assert ("no-referrer", "no-store") == (
        page.headers["Referrer-Policy"],
        page.headers["Cache-Control"],
    )
    assert "Your password was changed" in done.text
    assert (EMAIL,) == notice.envelope_to
    assert "Logged in as" in _log_in(app, NEW_PASSWORD)
    assert "Wrong email or password" in _log_in(app, PASSWORD)
    assert "already used" in browser.get(link).follow().text


def test_different_passwords_change_nothing(app: Any, browser: Any, smtp_sink: SMTPSink) -> None:
    """The two new passwords must match; otherwise the old password stays."""
    link = _local(_reset_link(browser, smtp_sink))
    reply = _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD + "x")

    assert "The two passwords differ" in reply.text
    assert "Logged in as" in _log_in(app, PASSWORD)


def test_weak_new_password_is_refused_with_the_reason(browser: Any, smtp_sink: SMTPSink) -> None:
    """The policy's reason shows on the reset page, and the link still works."""
    link = _local(_reset_link(browser, smtp_sink))
    reply = _submit(browser, link, password="password", confirm="password")

    assert "too common" in reply.text
    assert 200 == browser.get(link).status_int


def test_reset_ends_other_sessions(app: Any, browser: Any, smtp_sink: SMTPSink) -> None:
    """A browser logged in before the reset is logged out by it."""
    elsewhere = webtest.TestApp(app, extra_environ=HTTPS)
    _submit(elsewhere, "/login", email=EMAIL, password=PASSWORD)
    link = _local(_reset_link(browser, smtp_sink))
    _submit(browser, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)

    assert 'id="logout"' not in elsewhere.get("/").text


def test_link_ignores_the_host_header(browser: Any, smtp_sink: SMTPSink) -> None:
    """A forged Host header does not change the link in the mail (it comes from config)."""
    form = browser.get("/forgot", extra_environ={"HTTP_HOST": "evil.example"}).forms[0]
    form["email"] = EMAIL
    form.submit(extra_environ={"HTTP_HOST": "evil.example"})
    [message] = smtp_sink.wait_for(1)

    assert [] == [link for link in message.links if "evil.example" in link]
    assert any(link.startswith(RESET_PREFIX) for link in message.links)


def test_forms_need_the_csrf_token(app: Any, browser: Any) -> None:
    """A POST without the session's CSRF token is refused with 400 and requests nothing."""
    browser.get("/forgot")
    reply = browser.post("/forgot", {"email": EMAIL, "csrf": "forged"}, expect_errors=True)

    assert 400 == reply.status_int
    assert "pending=0" in repr(app.config["mailreset.plugin"].flow)


@pytest.mark.parametrize("token", ["nonsense", "a.b.c", "x" * 5000])
def test_bad_link_sends_back_to_forgot(browser: Any, token: str) -> None:
    """A link with a bad token says so and offers a new one."""
    reply = browser.get(f"/reset/{token}")

    assert "/forgot" == reply.location.removeprefix("http://localhost")
    assert "not valid" in reply.follow().text


# -- hardening (issue 12) ----------------------------------------------------------------------


@pytest.fixture
def make_app(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Any]:
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        config = {**example_config(folder, smtp_sink, RESET_PREFIX + "{token}"), **settings}
        app = create_app(config)
        app.config["mailreset.plugin"].users.create(EMAIL, PASSWORD)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_sign_up_answers_the_same_for_new_and_taken_addresses(
    app: Any, smtp_sink: SMTPSink
) -> None:
    """A taken address gets the new address's answer; each address gets its own mail, and
    the taken account keeps its password."""
    fields = {"password": "a good password"}
    taken = _submit(webtest.TestApp(app, extra_environ=HTTPS), "/signup", email=EMAIL, **fields)
    new = _submit(
        webtest.TestApp(app, extra_environ=HTTPS), "/signup", email="new@example.org", **fields
    )
    mails = {message.envelope_to: message.subject for message in smtp_sink.wait_for(2)}

    assert "We have sent a message to that address" in flashes(new.text)
    assert flashes(taken.text) == flashes(new.text)
    assert (taken.status_int, taken.request.path) == (new.status_int, new.request.path)
    assert "Someone tried to sign up" in mails[(EMAIL,)]
    assert "Welcome" in mails[("new@example.org",)]
    assert "Logged in as" in _log_in(app, PASSWORD)


def test_sign_up_refuses_a_blocked_password_with_spaces(browser: Any) -> None:
    """'password ' is as common as 'password'."""
    reply = _submit(browser, "/signup", email="new@example.org", password="password ")

    assert "too common" in reply.text


@pytest.mark.parametrize("value", NON_ASCII_CSRF)
def test_non_ascii_csrf_value_is_a_400(app: Any, browser: Any, value: str) -> None:
    """A non-ASCII CSRF field is a wrong token (400), not a server error."""
    browser.get("/forgot")
    reply = browser.post("/forgot", {"email": EMAIL, "csrf": value}, expect_errors=True)

    assert 400 == reply.status_int
    assert "pending=0" in repr(app.config["mailreset.plugin"].flow)


def test_non_ascii_session_cookie_is_no_session(browser: Any) -> None:
    """A forged session cookie with non-ASCII text is ignored, not a server error."""
    browser.set_cookie("session", "e30.ключ")
    reply = browser.get("/login")

    assert 200 == reply.status_int


@pytest.mark.parametrize("path", ["/", "/login", "/reset/nonsense"])
def test_pages_cannot_be_framed(browser: Any, path: str) -> None:
    """Every page forbids framing (clickjacking), old browsers and new."""
    reply = browser.get(path)

    assert "DENY" == reply.headers["X-Frame-Options"]
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("settings", "secure"), SECURE_COOKIE_CASES)
def test_session_cookie_is_secure_over_https(
    make_app: Any, settings: dict[str, Any], secure: bool
) -> None:
    """The session cookie carries Secure when the app is served over HTTPS."""
    reply = webtest.TestApp(make_app(**settings), extra_environ=HTTPS).get("/login")
    [cookie] = reply.headers.getall("Set-Cookie")

    assert cookie.startswith("session=")
    assert secure == ("; secure" in cookie.lower())


@pytest.mark.parametrize(("hops", "forwarded", "client"), CLIENT_KEY_CASES)
def test_client_key_is_the_connection_unless_proxies_are_configured(
    make_app: Any, hops: int, forwarded: str, client: str
) -> None:
    """The per-client limit keys on REMOTE_ADDR; X-Forwarded-For counts only with
    PROXY_HOPS, and then only the entries those proxies appended."""
    app = make_app(PROXY_HOPS=hops)
    limiter = RecordingLimiter()
    flow = app.config["mailreset.plugin"].flow
    flow.limiter = limiter
    browser = webtest.TestApp(app, extra_environ={**HTTPS, "REMOTE_ADDR": REMOTE_ADDR})
    form = browser.get("/forgot").forms[0]
    form["email"] = EMAIL
    form.submit(headers={"X-Forwarded-For": forwarded})
    assert flow.flush(timeout=10)

    assert ("client", client) in limiter.keys


def test_unset_mail_settings_stay_unset(make_app: Any, smtp_sink: SMTPSink) -> None:
    """MAIL_USERNAME=None is no user, not "None": the mail goes out without AUTH."""
    app = make_app(MAIL_USERNAME=None, MAIL_PASSWORD=None, MAIL_USE_TLS=None)
    _submit(webtest.TestApp(app, extra_environ=HTTPS), "/forgot", email=EMAIL)

    [message] = smtp_sink.wait_for(1)
    assert (EMAIL,) == message.envelope_to
