"""Search, wait and live events: what end-to-end suites in any language ask the sink."""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from urllib.parse import quote

import pytest
from devtools.sink.search import Query
from devtools.sink.server import DebugSink
from devtools.sink.summary import summarize

from tests.devtools.support import api, http, reset_mail, running_sink, wait_until


def _mail(
    to: str, subject: str, body: str, sender: str = "App <noreply@example.test>"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def _send(sink: DebugSink, *messages: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
        for message in messages:
            client.send_message(message)


def _subjects(sink: DebugSink, q: str) -> list[str]:
    body = api(sink, f"/api/messages?q={quote(q)}")
    assert len(body["messages"]) == body["total"]
    return [item["subject"] for item in body["messages"]]


MAILBAG = [
    _mail("ada@example.test", "Reset your password", "Open https://a.test/reset/1 soon."),
    _mail("bob@example.test", "Welcome aboard", "Your account is ready, Bob."),
    _mail(
        "Ada Lovelace <ada@example.test>",
        "Password changed",
        "Your password was changed.",
        sender='"Support Team" <help@example.test>',
    ),
    _mail("carol@example.test", "Weekly digest", "Nothing about resets here, only cakes."),
]


@pytest.fixture(scope="module")
def sink():
    """One sink holding MAILBAG for the search tests."""
    with running_sink() as running:
        _send(running, *MAILBAG)
        running.store.wait_for(len(MAILBAG))
        yield running


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("", ["Weekly digest", "Password changed", "Welcome aboard", "Reset your password"]),
        ("to:ada", ["Password changed", "Reset your password"]),
        ("TO:Ada@Example.Test", ["Password changed", "Reset your password"]),
        ("to:lovelace", ["Password changed"]),
        ('from:"support team"', ["Password changed"]),
        ("from:help@example.test", ["Password changed"]),
        ("subject:password", ["Password changed", "Reset your password"]),
        ('subject:"reset your"', ["Reset your password"]),
        ("cakes", ["Weekly digest"]),
        ("password to:ada subject:changed", ["Password changed"]),
        ("https://a.test/reset/1", ["Reset your password"]),
        ("bob", ["Welcome aboard"]),
        ("to:nobody", []),
    ],
)
def test_search_by_field_and_words(sink: DebugSink, q: str, expected: list[str]) -> None:
    """?q= keeps the messages matching every term, newest first, case-insensitive."""
    assert expected == _subjects(sink, q)


def test_a_query_parses_fields_quotes_and_words() -> None:
    """Terms carry an optional field; quotes keep spaces; an unknown prefix is a word."""
    query = Query.parse('to:Ada subject:"Reset Your" http://x.test  from: plain')

    expected = (
        ("to", "ada"),
        ("subject", "reset your"),
        ("", "http://x.test"),
        ("", "from:"),
        ("", "plain"),
    )
    assert expected == query.terms


def test_words_match_the_text_of_an_html_only_message() -> None:
    """A plain word finds text inside the HTML part when there is no text part."""
    raw = (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: html\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>Grace</b> &amp; co</p>\r\n"
    )
    summary = summarize(raw, "a@example.test", ("b@example.test",))

    assert Query.parse("grace & co").matches(summary)
    assert not Query.parse("<b>").matches(summary)


def test_wait_answers_at_once_with_a_message_already_there(sink: DebugSink) -> None:
    """/wait returns the newest match in full (links included) when one is already kept."""
    started = time.monotonic()
    detail = api(sink, f"/api/messages/wait?q={quote('to:ada subject:reset')}&timeout=5")

    assert time.monotonic() - started < 5
    assert "Reset your password" == detail["subject"]
    assert ["https://a.test/reset/1"] == detail["links"]


def test_wait_is_a_404_after_the_timeout(sink: DebugSink) -> None:
    """/wait with no match answers 404 once the timeout passed, and not before."""
    started = time.monotonic()
    status, _, body = http(sink, "/api/messages/wait?q=to:nobody&timeout=0.3")
    elapsed = time.monotonic() - started

    assert 404 == status
    assert "to:nobody" in json.loads(body)["error"].replace('"', "")
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    "params", ["timeout=soon", "timeout=-1", "timeout=301", "since=yesterday"]
)
def test_wait_refuses_bad_parameters(sink: DebugSink, params: str) -> None:
    """A timeout that is not 0-300 seconds, or a since that is not ISO 8601, is a 400."""
    status, _, body = http(sink, f"/api/messages/wait?q=x&{params}")

    assert 400 == status
    assert "timeout" in json.loads(body)["error"]


def test_wait_with_since_ignores_older_messages(sink: DebugSink) -> None:
    """since= skips matches received before it, so a suite never reads an older mail."""
    later = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()

    status = http(sink, f"/api/messages/wait?q=to:ada&timeout=0.2&since={quote(later)}")[0]

    assert 404 == status


def _wait_in_thread(sink: DebugSink, q: str, timeout: float) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def wait() -> None:
        status, _, body = http(sink, f"/api/messages/wait?q={quote(q)}&timeout={timeout}")
        outcome["answered"] = time.monotonic()
        outcome["status"] = status
        outcome["body"] = json.loads(body)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, outcome


def test_wait_answers_within_100_ms_of_the_arrival() -> None:
    """A match sent after the wait began answers it within 100 ms of arriving (5 rounds)."""
    latencies = []
    with running_sink() as sink:
        assert sink.web is not None
        arrived: dict[str, float] = {}
        sink.store.on_stored.append(
            lambda entry: arrived.setdefault(entry.summary.recipients[0], time.monotonic())
        )
        for round_number in range(5):
            to = f"round{round_number}@example.test"
            thread, outcome = _wait_in_thread(sink, f"to:{to}", 10)
            wait_until(lambda: sink.web.open_streams == 1)
            _send(sink, reset_mail(to="other@example.test"), reset_mail(to=to))
            thread.join(15)
            wait_until(lambda: sink.web.open_streams == 0)

            assert 200 == outcome["status"]
            assert [to] == outcome["body"]["to"]
            latencies.append(outcome["answered"] - arrived[to])

    assert max(latencies) < 0.1, f"arrival to answer: {latencies}"


def test_events_announce_each_change() -> None:
    """/api/events sends a change event at once, then one per arrival and per delete."""
    with running_sink() as sink:
        assert sink.web is not None
        stream = socket.create_connection(("127.0.0.1", sink.web.port), timeout=10)
        stream.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reader = stream.makefile("rb")
        head = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            head.append(line)

        def next_event() -> dict:
            lines = []
            while (line := reader.readline()) not in (b"\n", b""):
                lines.append(line.decode().rstrip("\n"))
            if lines == ["retry: 1000"]:
                return next_event()
            assert "event: change" == lines[0]
            return json.loads(lines[1].removeprefix("data: "))

        first = next_event()
        _send(sink, reset_mail())
        second = next_event()
        api(sink, "/api/messages", method="DELETE")
        third = next_event()
        reader.close()
        stream.close()

    assert b"HTTP/1.1 200 OK\r\n" == head[0]
    assert b"content-type: text/event-stream; charset=utf-8\r\n" in [h.lower() for h in head]
    assert (0, 1, 0) == (first["total"], second["total"], third["total"])
    assert first["version"] < second["version"] < third["version"]
