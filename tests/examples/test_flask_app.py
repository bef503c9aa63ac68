"""The Flask example through Flask's test client, mailing a real SMTP server (smtp_sink)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask")

from examples.flask_app.app import create_app  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

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
def app(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[flask.Flask]:
    app = create_app(
        {"TESTING": True, **example_config(tmp_path, smtp_sink, RESET_PREFIX + "{token}")}
    )
    app.extensions["users"].create(EMAIL, PASSWORD)
    yield app
    app.extensions["mailreset.close"]()


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    match = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))
    assert match is not None, f"no CSRF field at {path}"
    return match.group(1)


def _post(client: FlaskClient, path: str, *, form_at: str | None = None, **fields: str) -> Any:
    """Post ``fields`` to ``path`` with the CSRF token of the form page (``path`` itself)."""
    csrf = _csrf(client, form_at or path)
    return client.post(path, data={"csrf": csrf, **fields}, follow_redirects=True)


def _log_in(client: FlaskClient, password: str) -> str:
    reply = _post(client, "/login", email=EMAIL, password=password)
    return str(reply.get_data(as_text=True))


def _reset_link(client: FlaskClient, smtp_sink: SMTPSink) -> str:
    _post(client, "/forgot", email=EMAIL.upper())
    [message] = smtp_sink.wait_for(1)
    smtp_sink.clear()
    return RESET_PREFIX + extract_token(message, RESET_PREFIX)


def test_sign_up_log_in_and_out(client: FlaskClient) -> None:
    """A new account can log in, sees its address, and logs out."""
    _post(client, "/signup", email="new@example.org", password="a good password")
    logged_in = _post(client, "/login", email="new@example.org", password="a good password")
    logged_out = _post(client, "/logout", form_at="/")

    assert "Logged in as new@example.org" in logged_in.get_data(as_text=True)
    assert 'id="logout"' not in logged_out.get_data(as_text=True)


def test_sign_up_applies_the_password_policy(client: FlaskClient) -> None:
    """A password the policy refuses does not create the account."""
    reply = _post(client, "/signup", email="new@example.org", password="short")

    assert "at least 8 characters" in reply.get_data(as_text=True)
    assert "Wrong email or password" in _post(
        client, "/login", email="new@example.org", password="short"
    ).get_data(as_text=True)


def test_forgot_password_answers_the_same_for_unknown_addresses(
    client: FlaskClient, smtp_sink: SMTPSink
) -> None:
    """Known and unknown addresses get the same redirect; only the known one gets mail."""
    known = client.post("/forgot", data={"csrf": _csrf(client, "/forgot"), "email": EMAIL})
    unknown = client.post(
        "/forgot", data={"csrf": _csrf(client, "/forgot"), "email": "nobody@example.org"}
    )
    [message] = smtp_sink.wait_for(1)

    assert (known.status_code, known.location) == (unknown.status_code, unknown.location)
    assert (EMAIL,) == message.envelope_to


def test_whole_reset_over_http(client: FlaskClient, smtp_sink: SMTPSink) -> None:
    """Link, new password twice, notice mail, new password works, old one and the link do not."""
    link = _reset_link(client, smtp_sink)
    page = client.get(link)
    done = _post(client, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    [notice] = smtp_sink.wait_for(1)

    assert ("no-referrer", "no-store") == (
        page.headers["Referrer-Policy"],
        page.headers["Cache-Control"],
    )
    assert "Your password was changed" in done.get_data(as_text=True)
    assert (EMAIL,) == notice.envelope_to
    assert "Logged in as" in _log_in(client.application.test_client(), NEW_PASSWORD)
    assert "Wrong email or password" in _log_in(client.application.test_client(), PASSWORD)
    again = client.get(link, follow_redirects=True)
    assert "already used" in again.get_data(as_text=True)


def test_different_passwords_change_nothing(client: FlaskClient, smtp_sink: SMTPSink) -> None:
    """The two new passwords must match; otherwise the old password stays."""
    link = _reset_link(client, smtp_sink)
    reply = _post(client, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD + "x")

    assert "The two passwords differ" in reply.get_data(as_text=True)
    assert "Logged in as" in _log_in(client.application.test_client(), PASSWORD)


def test_weak_new_password_is_refused_with_the_reason(
    client: FlaskClient, smtp_sink: SMTPSink
) -> None:
    """The policy's reason shows on the reset page, and the link still works."""
    link = _reset_link(client, smtp_sink)
    reply = _post(client, link, password="password", confirm="password")

    assert "too common" in reply.get_data(as_text=True)
    assert 200 == client.get(link).status_code


def test_reset_ends_other_sessions(app: flask.Flask, smtp_sink: SMTPSink) -> None:
    """A browser logged in before the reset is logged out by it."""
    elsewhere = app.test_client()
    _log_in(elsewhere, PASSWORD)
    client = app.test_client()
    link = _reset_link(client, smtp_sink)
    _post(client, link, password=NEW_PASSWORD, confirm=NEW_PASSWORD)

    assert 'id="logout"' not in elsewhere.get("/").get_data(as_text=True)


def test_link_ignores_the_host_header(client: FlaskClient, smtp_sink: SMTPSink) -> None:
    """A forged Host header does not change the link in the mail (it comes from config)."""
    evil = "http://evil.example"
    form = client.get("/forgot", base_url=evil).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    reply = client.post("/forgot", data={"csrf": csrf[1], "email": EMAIL}, base_url=evil)
    [message] = smtp_sink.wait_for(1)

    assert 302 == reply.status_code
    assert [] == [link for link in message.links if "evil.example" in link]
    assert any(link.startswith(RESET_PREFIX) for link in message.links)


def test_forms_need_the_csrf_token(app: flask.Flask, client: FlaskClient) -> None:
    """A POST without the session's CSRF token is refused with 400 and requests nothing."""
    client.get("/forgot")
    reply = client.post("/forgot", data={"email": EMAIL, "csrf": "forged"})

    assert 400 == reply.status_code
    assert "pending=0" in repr(app.extensions["mailreset"])


@pytest.mark.parametrize("token", ["nonsense", "a.b.c", "x" * 5000])
def test_bad_link_sends_back_to_forgot(client: FlaskClient, token: str) -> None:
    """A link with a bad token says so and offers a new one."""
    reply = client.get(f"/reset/{token}", follow_redirects=True)

    assert "not valid" in reply.get_data(as_text=True)
    assert "/forgot" == reply.request.path


# -- hardening (issue 12) ----------------------------------------------------------------------


@pytest.fixture
def make_app(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Any]:
    made: list[flask.Flask] = []

    def make(**settings: Any) -> flask.Flask:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        config = {**example_config(folder, smtp_sink, RESET_PREFIX + "{token}"), **settings}
        app = create_app({"TESTING": True, **config})
        app.extensions["users"].create(EMAIL, PASSWORD)
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["mailreset.close"]()


def test_sign_up_answers_the_same_for_new_and_taken_addresses(
    app: flask.Flask, smtp_sink: SMTPSink
) -> None:
    """A taken address gets the new address's answer; each address gets its own mail, and
    the taken account keeps its password."""
    taken = _post(app.test_client(), "/signup", email=EMAIL.lower(), password="a good password")
    new = _post(app.test_client(), "/signup", email="new@example.org", password="a good password")
    mails = {message.envelope_to: message.subject for message in smtp_sink.wait_for(2)}

    assert "We have sent a message to that address" in flashes(new.get_data(as_text=True))
    assert flashes(taken.get_data(as_text=True)) == flashes(new.get_data(as_text=True))
    assert (taken.status_code, taken.request.path) == (new.status_code, new.request.path)
    assert "Someone tried to sign up" in mails[(EMAIL,)]  # the stored address, as typed then
    assert "Welcome" in mails[("new@example.org",)]
    assert "Logged in as" in _log_in(app.test_client(), PASSWORD)


def test_sign_up_refuses_a_blocked_password_with_spaces(client: FlaskClient) -> None:
    """'password ' is as common as 'password'."""
    reply = _post(client, "/signup", email="new@example.org", password="password ")

    assert "too common" in reply.get_data(as_text=True)


@pytest.mark.parametrize("value", NON_ASCII_CSRF)
def test_non_ascii_csrf_value_is_a_400(app: flask.Flask, client: FlaskClient, value: str) -> None:
    """A non-ASCII CSRF field is a wrong token (400), not a server error."""
    client.get("/forgot")
    reply = client.post("/forgot", data={"email": EMAIL, "csrf": value})

    assert 400 == reply.status_code
    assert "pending=0" in repr(app.extensions["mailreset"])


@pytest.mark.parametrize("path", ["/", "/login", "/reset/nonsense", "/no-such-page"])
def test_pages_cannot_be_framed(client: FlaskClient, path: str) -> None:
    """Every answer forbids framing (clickjacking), old browsers and new."""
    reply = client.get(path)

    assert "DENY" == reply.headers["X-Frame-Options"]
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("settings", "secure"), SECURE_COOKIE_CASES)
def test_session_cookie_is_secure_over_https(
    make_app: Any, settings: dict[str, Any], secure: bool
) -> None:
    """The session cookie carries Secure when the app is served over HTTPS."""
    reply = make_app(**settings).test_client().get("/login", base_url="https://app.example")
    cookie = reply.headers["Set-Cookie"]

    assert cookie.startswith("session=")
    assert secure == ("; Secure" in cookie)


@pytest.mark.parametrize(("hops", "forwarded", "client"), CLIENT_KEY_CASES)
def test_client_key_is_the_connection_unless_proxies_are_configured(
    make_app: Any, hops: int, forwarded: str, client: str
) -> None:
    """The per-client limit keys on the connection's address; X-Forwarded-For counts only
    with PROXY_HOPS, and then only the entries those proxies appended."""
    app = make_app(PROXY_HOPS=hops)
    limiter = RecordingLimiter()
    app.extensions["mailreset"].limiter = limiter
    browser = app.test_client()
    environ = {"REMOTE_ADDR": REMOTE_ADDR}
    page = browser.get("/forgot", environ_base=environ).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    browser.post(
        "/forgot",
        data={"csrf": csrf[1], "email": EMAIL},
        environ_base=environ,
        headers={"X-Forwarded-For": forwarded},
    )
    assert app.extensions["mailreset"].flush(timeout=10)

    assert ("client", client) in limiter.keys


def test_unset_mail_settings_stay_unset(make_app: Any, smtp_sink: SMTPSink) -> None:
    """MAIL_USERNAME=None (os.environ.get of an unset variable) is no user, not "None":
    the mail goes out without AUTH."""
    app = make_app(MAIL_USERNAME=None, MAIL_PASSWORD=None, MAIL_USE_TLS=None)
    _post(app.test_client(), "/forgot", email=EMAIL)

    [message] = smtp_sink.wait_for(1)
    assert (EMAIL,) == message.envelope_to
