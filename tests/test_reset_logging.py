"""The flow's log lines: an outsider's value is escaped, a token never appears, on any path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from mailreset import MemoryRateLimiter, MemoryUserStore, PasswordReset, TemplateError
from mailreset._redact import describe, escape, safe
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService

SECRET = "s3cret-key-for-tests-only-0123456789abcdef"
FORGED = "\r\nCRITICAL mailreset: forged line"


@pytest.fixture
def users() -> MemoryUserStore:
    store = MemoryUserStore()
    store.add("alice@example.org", "old password 1")
    return store


@pytest.fixture
def make_flow(
    users: MemoryUserStore, mail_outbox: Any, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[..., PasswordReset[Any]]]:
    caplog.set_level(logging.DEBUG, logger="mailreset")
    made: list[PasswordReset[Any]] = []

    def make(**options: Any) -> PasswordReset[Any]:
        options.setdefault("reset_url", "https://app.example/reset/{token}")
        options.setdefault("limiter", MemoryRateLimiter(per_client=1))
        flow: PasswordReset[Any] = PasswordReset(
            TokenService(SECRET),
            options.pop("builder", MessageBuilder(sender="Example <noreply@app.example>")),
            options.pop("mailer", mail_outbox),
            users,
            app_name="Example",
            **options,
        )
        made.append(flow)
        return flow

    yield make
    for flow in made:
        flow.close(timeout=10)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every log line as a handler would write it (exception text included)."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [formatter.format(record) for record in caplog.records]


def _assert_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    for line in _lines(caplog):
        assert not any(char in line for char in "\r\n\x1b\x85\u2028\u2029\u202e"), repr(line)


def test_client_key_with_a_line_break_stays_on_its_line(
    make_flow: Callable[..., PasswordReset[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A forged client key (X-Forwarded-For, say) with CR LF cannot forge a log line."""
    flow = make_flow()
    client = "203.0.113.9" + FORGED + "\x1b[31m\u202e"
    for _ in range(2):  # the second is over the per-client limit: logged with the key
        flow.request("alice@example.org", client=client)
    assert flow.flush(timeout=10)

    _assert_one_line_each(caplog)
    [limited] = [line for line in _lines(caplog) if "rate-limited for client" in line]
    assert "203.0.113.9\\r\\nCRITICAL mailreset: forged line\\x1b[31m\\u202e" in limited


@pytest.mark.parametrize(
    "typed",
    [
        "x@evil.example" + FORGED,
        "x@evil.example%0ACRITICAL mailreset: forged",
        "x@evil.example\u2028CRITICAL mailreset: forged",
        "a\u202e@example.org",
        "\x1b]0;title\x07@example.org",
    ],
)
def test_typed_address_never_forges_a_line(
    make_flow: Callable[..., PasswordReset[Any]], caplog: pytest.LogCaptureFixture, typed: str
) -> None:
    """Whatever address is typed, each log line stays one line without control characters."""
    flow = make_flow(notify_unknown=True, limiter=MemoryRateLimiter(per_address=1))
    for _ in range(2):
        flow.request(typed, client="203.0.113.9")
    assert flow.flush(timeout=10)

    assert caplog.records
    _assert_one_line_each(caplog)


def test_callable_reset_url_returning_a_bad_url_never_logs_the_token(
    make_flow: Callable[..., PasswordReset[Any]],
    mail_outbox: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """reset_url gives an ftp: URL with the live token: the error is logged, the token not."""
    seen: list[str] = []

    def bad_url(token: str) -> str:
        seen.append(token)
        return f"ftp://files.example/reset/{token}"

    flow = make_flow(reset_url=bad_url)
    flow.request("alice@example.org")
    assert flow.flush(timeout=10)

    [token] = seen
    logged = "\n".join(_lines(caplog))
    assert "must give an absolute http(s) URL" in logged
    assert "ftp://files.example/reset/{token}" in logged  # the shape, for whoever debugs it
    assert token not in logged
    assert token.split(".")[2] not in logged
    assert [] == mail_outbox.messages


def test_errors_that_quote_the_link_are_logged_redacted(
    make_flow: Callable[..., PasswordReset[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A builder and a mailer whose errors quote the link (and token): logged without it."""
    seen: list[str] = []

    class QuotingBuilder(MessageBuilder):
        def build(self, template: str, **options: Any) -> Any:
            url = options["context"].get("url", "")
            seen.append(url)
            raise TemplateError(f"cannot render {url}\nwith token {url.rsplit('/', 1)[-1]}")

    class QuotingMailer:
        def send(self, message: Any) -> Future[Any]:
            body = message.get_body(("plain",)).get_content()
            raise RuntimeError(f"refused message:\n{body}")

        def close(self) -> None:
            pass

    builder_flow = make_flow(builder=QuotingBuilder(sender="Example <noreply@app.example>"))
    builder_flow.request("alice@example.org")
    assert builder_flow.flush(timeout=10)
    mailer_flow = make_flow(mailer=QuotingMailer())
    mailer_flow.request("alice@example.org")
    assert mailer_flow.flush(timeout=10)

    logged = "\n".join(_lines(caplog))
    failures = [line for line in _lines(caplog) if "password reset request failed" in line]
    assert 2 == len(failures), logged
    token = seen[0].rsplit("/", 1)[-1]
    assert len(token) > 100
    assert token not in logged
    assert token.split(".")[2] not in logged
    assert "TemplateError" in failures[0] or "TemplateError" in failures[1]
    _assert_one_line_each(caplog)


def test_escape_keeps_text_and_escapes_controls() -> None:
    """Plain and international text pass; controls, separators and backslashes are escaped;
    a flood is cut."""
    assert "ann@exämple.org 名前" == escape("ann@exämple.org 名前")
    assert "a\\r\\nb\\\\r\\u2028\\x1b\\u202e\\x00" == escape("a\r\nb\\r\u2028\x1b\u202e\x00")
    assert 203 == len(escape("x" * 10_000))


def test_safe_and_describe_redact_links_and_tokens() -> None:
    """safe() drops URL paths and JWT-looking runs; describe() adds where, on one line."""
    token = TokenService(SECRET).issue("reset_password", "1", bind="state")
    try:
        raise ValueError(f"bad\nhttps://app.example/reset/{token} and {token}")
    except ValueError as error:
        described = describe(error)

    assert token not in safe(f"see https://app.example/reset/{token}")
    assert described.startswith("ValueError: bad\\nhttps://app.example/[redacted] and [redacted]")
    assert "test_reset_logging.py:" in described
