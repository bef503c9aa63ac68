"""Malformed input never stops the debug sink, and many clients at once lose nothing."""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Iterator

import pytest
from devtools.sink.server import DebugSink

from tests.devtools.support import RawSMTP, api, reset_mail, running_sink


@pytest.fixture(scope="module")
def sink() -> Iterator[DebugSink]:
    """One sink for the whole module; each test checks it still serves afterwards."""
    with running_sink(max_messages=5000) as running:
        yield running


def _still_serves(sink: DebugSink) -> None:
    before = len(sink.store)
    with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=10) as client:
        client.send_message(reset_mail(subject="still here"))
    sink.store.wait_for(before + 1)
    assert "still here" == sink.store.entries()[0].message.subject


def test_garbage_commands_get_errors_and_the_session_goes_on(sink: DebugSink) -> None:
    """Unknown verbs, binary junk and bad arguments get 5xx replies, not a crash."""
    client = RawSMTP(sink.smtp.port)
    replies = [
        client.command(line)
        for line in (b"FOO BAR", b"\x00\x01\x02\xff", b"MAIL TO:<nobody>", b"RCPT", b"EHLO")
    ]
    client.command(b"QUIT")
    client.close()

    assert [reply[:1] for reply in replies] == [b"5"] * 5
    _still_serves(sink)


def test_data_before_recipients_is_refused_and_nothing_is_stored(sink: DebugSink) -> None:
    """DATA without MAIL/RCPT gets 503; a transaction that never sends DATA stores nothing."""
    before = len(sink.store)
    client = RawSMTP(sink.smtp.port)
    client.command(b"EHLO test")
    no_sender = client.command(b"DATA")
    client.command(b"MAIL FROM:<a@example.test>")
    client.command(b"RCPT TO:<b@example.test>")
    client.command(b"RSET")
    client.command(b"MAIL FROM:<a@example.test>")
    client.command(b"QUIT")
    client.close()

    assert no_sender.startswith(b"503")
    assert before == len(sink.store)
    _still_serves(sink)


def test_a_one_megabyte_command_line_is_refused(sink: DebugSink) -> None:
    """A 1 MB command line gets 500 and the connection keeps working."""
    client = RawSMTP(sink.smtp.port)
    reply = client.command(b"EHLO " + b"a" * 1_000_000)
    after = client.command(b"NOOP")
    client.close()

    assert reply.startswith(b"500")
    assert after.startswith(b"250")
    _still_serves(sink)


def test_a_one_megabyte_line_inside_data_is_refused(sink: DebugSink) -> None:
    """A 1 MB line in the message gets 500 after DATA, and nothing is stored."""
    before = len(sink.store)
    client = RawSMTP(sink.smtp.port)
    client.begin_data()
    client.send(b"Subject: long\r\n\r\n" + b"x" * 1_000_000 + b"\r\n.\r\n")
    reply = client.reply()
    client.close()

    assert reply.startswith(b"500")
    assert before == len(sink.store)
    _still_serves(sink)


def test_non_utf8_bytes_are_stored_and_viewable(sink: DebugSink) -> None:
    """Latin-1 and invalid UTF-8 in the envelope and body are captured and served as JSON."""
    client = RawSMTP(sink.smtp.port)
    client.begin_data(b"caf\xe9@example.test")
    body = b"Subject: caf\xe9 \xff\xfe\r\nContent-Type: text/plain\r\n\r\nna\xefve \xc3\x28\r\n"
    client.send(body + b".\r\n")
    reply = client.reply()
    client.command(b"QUIT")
    client.close()

    assert reply.startswith(b"250")
    newest = sink.store.entries()[0]
    assert body == newest.message.raw
    detail = api(sink, f"/api/messages/{newest.id}")
    assert newest.id == detail["id"]
    _still_serves(sink)


def test_a_client_vanishing_mid_data_leaves_nothing_behind(sink: DebugSink) -> None:
    """A connection dropped halfway through DATA stores nothing and harms nobody."""
    before = len(sink.store)
    client = RawSMTP(sink.smtp.port)
    client.begin_data()
    client.send(b"Subject: half\r\n\r\nthe first half of a mess")
    client.close()

    _still_serves(sink)
    assert before + 1 == len(sink.store)


def test_a_client_that_says_nothing_does_not_block_others(sink: DebugSink) -> None:
    """An idle open connection does not hold up other clients."""
    idle = RawSMTP(sink.smtp.port)
    try:
        _still_serves(sink)
    finally:
        idle.close()


@pytest.mark.slow
def test_twenty_clients_at_once_lose_nothing(sink: DebugSink) -> None:
    """20 clients sending 100 messages each at the same time: all 2,000 are stored."""
    sink.store.clear()
    clients, per_client = 20, 100
    errors: list[BaseException] = []
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", sink.smtp.port, timeout=30) as smtp:
                start.wait(10)
                for index in range(per_client):
                    message = reset_mail(to=f"c{number}-{index}@example.test")
                    smtp.send_message(message)
        except BaseException as error:  # collected, so the test reports it
            errors.append(error)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    arrived = sink.store.wait_for(clients * per_client, timeout=30)
    assert [] == errors
    expected = {f"c{n}-{i}@example.test" for n in range(clients) for i in range(per_client)}
    assert expected == {message.envelope_to[0] for message in arrived}
    assert time.monotonic() - began < 120
