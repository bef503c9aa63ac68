"""The Django example through Django's test client (pytest-django), mailing smtp_sink."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("pytest_django")

from examples.django_app.settings import configure, mail_settings


def configure_for_tests() -> None:
    """The example's settings for this run (Django's settings are per process: the first
    configuration holds). The test database is a file, not SQLite's memory: Django never
    closes a connection to an in-memory database, and the flow's threads open their own."""
    folder = tempfile.mkdtemp(prefix="mailreset-django-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{folder}/app.sqlite3"}
    configure(DATABASES={"default": {**database, "TEST": {"NAME": f"{folder}/test.sqlite3"}}})


configure_for_tests()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from examples.django_app import mail_backend  # noqa: E402
from examples.django_app.adapter import DjangoUserStore, reset_flow  # noqa: E402

from mailreset import StaleToken  # noqa: E402
from mailreset.testing import SMTPSink, extract_token  # noqa: E402
from tests.examples.support import NEW_PASSWORD, PASSWORD  # noqa: E402

RESET_PREFIX = "https://app.example/reset/"
EMAIL = "Ann.Example@example.org"


def set_mail(settings: Any, **options: Any) -> None:
    """Point Django's mail at the mailreset backend with ``options`` (host, port, ...):
    MAILERS on Django 6.1+, EMAIL_* before (pytest-django's test environment swapped either
    for Django's locmem backend)."""
    for name, value in mail_settings(**options).items():
        setattr(settings, name, value)


def use_example_settings(settings: Any, smtp_sink: SMTPSink, reset_url: str) -> None:
    """The example's mail settings against ``smtp_sink``, and cheap password hashes."""
    set_mail(settings, host=smtp_sink.host, port=smtp_sink.port)
    settings.MAILRESET_SECRET_KEY = "test-token-key-" + "1" * 32
    settings.MAILRESET_URL = reset_url
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def settle() -> None:
    """Let the flow and the mailer finish: no mail of one test reaches the next one's sink."""
    assert reset_flow().flush(10)
    mailer = mail_backend.mailer()
    assert mailer.flush(10)  # type: ignore[attr-defined]


@pytest.fixture
def site(settings: Any, smtp_sink: SMTPSink, transactional_db: None) -> Iterator[None]:
    # transactional_db: the flow looks users up in its own threads, which see committed rows.
    use_example_settings(settings, smtp_sink, RESET_PREFIX + "{token}")
    get_user_model().objects.create_user(username=EMAIL.lower(), email=EMAIL, password=PASSWORD)
    yield
    settle()


@pytest.fixture
def browser(site: None) -> Client:
    return Client(enforce_csrf_checks=True)  # the test client skips CSRF unless told


def _csrf(client: Client, path: str) -> str:
    page = client.get(path, follow=True).content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, f"no CSRF field at {path}"
    return match.group(1)


def _submit(client: Client, path: str, *, form_at: str | None = None, **fields: str) -> Any:
    """Post ``fields`` with the CSRF token of the form page; follow the redirects."""
    csrf = _csrf(client, form_at or path)
    return client.post(path, {"csrfmiddlewaretoken": csrf, **fields}, follow=True)


def _text(reply: Any) -> str:
    return str(reply.content.decode())


def _log_in(password: str) -> str:
    return _text(
        _submit(Client(enforce_csrf_checks=True), "/login", email=EMAIL, password=password)
    )


def _reset_link(client: Client, smtp_sink: SMTPSink) -> str:
    _submit(client, "/forgot", email=EMAIL.upper())
    [message] = smtp_sink.wait_for(1)
    smtp_sink.clear()
    return "/reset/" + extract_token(message, RESET_PREFIX)


def _set_password(client: Client, link: str, password: str, confirm: str) -> Any:
    """Open the mailed link (its token goes into the session), then fill the form."""
    client.get(link)
    return _submit(client, "/reset/form", password=password, confirm=confirm)


def test_sign_up_mails_a_welcome_and_logs_in_and_out(browser: Client, smtp_sink: SMTPSink) -> None:
    """A new account gets a welcome through Django's send_mail, logs in, and logs out."""
    created = _submit(browser, "/signup", email="New@example.org", password="a good password")
    [welcome] = smtp_sink.wait_for(1)
    logged_in = _submit(browser, "/login", email="new@EXAMPLE.org", password="a good password")
    logged_out = _submit(browser, "/logout", form_at="/")

    assert "Account created" in _text(created)
    assert ("New@example.org",) == welcome.envelope_to
    assert "Welcome to Example app" == welcome.subject
    assert "Logged in as New@example.org" in _text(logged_in)
    assert 'id="logout"' not in _text(logged_out)


def test_sign_up_applies_the_password_policy_and_refuses_a_taken_address(
    browser: Client,
) -> None:
    """A weak password or an address already used (in any case) makes no account."""
    weak = _submit(browser, "/signup", email="new@example.org", password="short")
    taken = _submit(browser, "/signup", email=EMAIL.upper(), password="a good password")

    assert "at least 8 characters" in _text(weak)
    assert "cannot be used" in _text(taken)
    assert [EMAIL] == [user.email for user in get_user_model().objects.all()]


def test_forgot_password_answers_the_same_for_unknown_addresses(
    browser: Client, smtp_sink: SMTPSink
) -> None:
    """Known and unknown addresses get the same redirect; only the known one gets mail."""
    replies = [
        browser.post("/forgot", {"csrfmiddlewaretoken": _csrf(browser, "/forgot"), "email": to})
        for to in (EMAIL, "nobody@example.org")
    ]
    [message] = smtp_sink.wait_for(1)

    assert [302, 302] == [reply.status_code for reply in replies]
    assert replies[0]["Location"] == replies[1]["Location"]
    assert (EMAIL,) == message.envelope_to


def test_whole_reset_over_http(browser: Client, smtp_sink: SMTPSink) -> None:
    """Link, new password twice, notice mail, new password works, old one and the link do not."""
    link = _reset_link(browser, smtp_sink)
    opened = browser.get(link)
    form = browser.get(opened["Location"])
    done = _set_password(browser, link, NEW_PASSWORD, NEW_PASSWORD)
    [notice] = smtp_sink.wait_for(1)

    assert ("no-referrer", "no-store") == (opened["Referrer-Policy"], opened["Cache-Control"])
    assert ("/reset/form", "no-store") == (opened["Location"], form["Cache-Control"])
    assert 'name="confirm"' in _text(form)
    assert "Your password was changed" in _text(done)
    assert (EMAIL,) == notice.envelope_to
    assert "Logged in as" in _log_in(NEW_PASSWORD)
    assert "Wrong email or password" in _log_in(PASSWORD)
    assert "already used" in _text(browser.get(link, follow=True))


def test_different_passwords_change_nothing(browser: Client, smtp_sink: SMTPSink) -> None:
    """The two new passwords must match; otherwise the old password stays."""
    link = _reset_link(browser, smtp_sink)
    reply = _set_password(browser, link, NEW_PASSWORD, NEW_PASSWORD + "x")

    assert "The two passwords differ" in _text(reply)
    assert "Logged in as" in _log_in(PASSWORD)


def test_weak_new_password_is_refused_with_the_reason(
    browser: Client, smtp_sink: SMTPSink
) -> None:
    """The policy's reason shows on the reset page, and the link still works."""
    link = _reset_link(browser, smtp_sink)
    reply = _set_password(browser, link, "password", "password")

    assert "too common" in _text(reply)
    assert 'name="confirm"' in _text(browser.get(link, follow=True))


def test_reset_ends_other_sessions(browser: Client, smtp_sink: SMTPSink) -> None:
    """A browser logged in before the reset is logged out by it (Django's session hash)."""
    elsewhere = Client(enforce_csrf_checks=True)
    _submit(elsewhere, "/login", email=EMAIL, password=PASSWORD)
    assert 'id="logout"' in _text(elsewhere.get("/"))
    link = _reset_link(browser, smtp_sink)
    _set_password(browser, link, NEW_PASSWORD, NEW_PASSWORD)

    assert 'id="logout"' not in _text(elsewhere.get("/"))


def test_link_ignores_the_host_header(browser: Client, settings: Any, smtp_sink: SMTPSink) -> None:
    """Even with every Host allowed, a forged Host does not change the link in the mail."""
    settings.ALLOWED_HOSTS = ["*"]
    csrf = _csrf(browser, "/forgot")
    browser.post(
        "/forgot", {"csrfmiddlewaretoken": csrf, "email": EMAIL}, HTTP_HOST="evil.example"
    )
    [message] = smtp_sink.wait_for(1)

    assert [] == [link for link in message.links if "evil.example" in link]
    assert any(link.startswith(RESET_PREFIX) for link in message.links)


def test_forms_need_the_csrf_token(browser: Client, smtp_sink: SMTPSink) -> None:
    """A POST without the session's CSRF token is refused (403, Django's) and requests nothing."""
    browser.get("/forgot")
    reply = browser.post("/forgot", {"email": EMAIL, "csrfmiddlewaretoken": "forged" * 6})

    assert 403 == reply.status_code
    assert reset_flow().flush(5)
    assert [] == smtp_sink.messages


@pytest.mark.parametrize("token", ["nonsense", "a.b.c", "x" * 5000])
def test_bad_link_sends_back_to_forgot(browser: Client, token: str) -> None:
    """A link with a bad token says so and offers a new one."""
    reply = browser.get(f"/reset/{token}", follow=True)
    form = browser.get("/reset/form", follow=True)  # no token in the session either

    assert [("/forgot", 302)] == reply.redirect_chain == form.redirect_chain
    assert "not valid" in _text(reply)


def test_store_sets_the_password_only_from_the_expected_state(site: None) -> None:
    """set_password is a compare-and-set: a second one from the same old hash changes nothing."""
    store = DjangoUserStore()
    first, second = store.find_by_email(EMAIL.lower()), store.find_by_email(EMAIL.lower())
    assert first is not None
    assert second is not None
    old = store.state(first)

    assert store.set_password(first, NEW_PASSWORD, expected_state=old)
    assert not store.set_password(second, "a third password 3", expected_state=old)
    assert "Logged in as" in _log_in(NEW_PASSWORD)


def test_a_link_completes_once(site: None, smtp_sink: SMTPSink) -> None:
    """A second completion with one token is StaleToken; a stale user object writes nothing."""
    flow = reset_flow()
    flow.request(EMAIL)
    [message] = smtp_sink.wait_for(1)
    token = extract_token(message, RESET_PREFIX)
    before = flow.check(token)  # the user as loaded before the reset
    store = DjangoUserStore()

    flow.complete(token, NEW_PASSWORD)
    with pytest.raises(StaleToken):
        flow.complete(token, "a third password 3")
    assert not store.set_password(before, "a fourth password 4", expected_state=before.password)
    assert "Logged in as" in _log_in(NEW_PASSWORD)
