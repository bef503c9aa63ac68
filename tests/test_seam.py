"""The seam: a transport written by a user gets exactly what the built-in ones get."""

from __future__ import annotations

import threading
from email.message import EmailMessage, Message
from email.mime.text import MIMEText

import pytest

from mailreset import (
    Delivery,
    Envelope,
    MemoryTransport,
    MessageBuilder,
    SMTPTransport,
    SyncMailer,
    ThreadedMailer,
)
from mailreset.mailers import Mailer
from mailreset.testing import SMTPSink
from tests.mail_factory import make_message


class ListTransport:
    """A user's own transport (think of an HTTP mail API): only the Transport protocol."""

    def __init__(self) -> None:
        self.received: list[tuple[str, tuple[str, ...], bytes]] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, envelope: Envelope) -> Delivery:
        with self._lock:
            self.received.append((envelope.sender, envelope.recipients, envelope.data))
        return Delivery(
            message_id=envelope.message_id or "",
            envelope_from=envelope.sender,
            accepted=envelope.recipients,
        )


def _messages() -> list[Message]:
    """Plain, Bcc'd, built (multipart, non-ASCII), dot-leading and legacy compat32 messages."""
    built = MessageBuilder(sender="App <app@example.com>").build(
        "reset_password",
        to="Zoë <zoe@example.com>",
        bcc="audit@example.com",
        context={"url": "https://app.example/reset/T", "expires_minutes": 10, "app_name": "Ä"},
    )
    legacy = MIMEText("legacy body\n.leading dot\n")
    legacy["From"] = "app@example.com"
    legacy["To"] = "old@example.com"
    legacy["Subject"] = "legacy"
    return [
        make_message(1),
        make_message(2, cc="cc@example.com", bcc="hidden@example.com"),
        built,
        make_message(3, body=".hidden\n..two\nend\n"),
        legacy,
    ]


@pytest.mark.parametrize("kind", ["SyncMailer", "ThreadedMailer"])
def test_a_users_transport_gets_the_same_bytes_and_recipients(
    smtp_sink: SMTPSink, kind: str
) -> None:
    """Through either mailer, a transport of the user's, MemoryTransport and SMTPTransport
    (to a real aiosmtpd sink) get byte-identical data and the same envelope."""
    messages = _messages()
    ours = ListTransport()
    memory = MemoryTransport()
    smtp = SMTPTransport(smtp_sink.settings)
    for transport in (ours, memory, smtp):
        mailer: Mailer = (
            SyncMailer(transport) if kind == "SyncMailer" else ThreadedMailer(transport)
        )
        futures = [mailer.send(message) for message in messages]
        for future in futures:
            future.result(timeout=10)
        mailer.close()
    arrived = smtp_sink.wait_for(len(messages))

    from_memory = [(sent.sender, sent.recipients, sent.data) for sent in memory.envelopes]
    from_sink = [(got.envelope_from, got.envelope_to, got.raw) for got in arrived]
    assert len(messages) == len(ours.received)
    assert from_memory == ours.received
    assert from_sink == ours.received
    assert all(b"hidden@example.com" not in data for _, _, data in ours.received)
    assert ("user@example.com", "cc@example.com", "hidden@example.com") == ours.received[1][1]


def test_an_envelope_goes_through_unchanged() -> None:
    """An Envelope made once is what the transport gets: the very object, not a copy."""
    envelope = Envelope.from_message(make_message(4))
    ours = ListTransport()
    memory = MemoryTransport()

    SyncMailer(ours).send(envelope).result()
    SyncMailer(memory).send(envelope).result()

    assert [(envelope.sender, envelope.recipients, envelope.data)] == ours.received
    assert [envelope] == memory.envelopes


def test_memory_transport_records_messages_and_envelopes() -> None:
    """MemoryTransport keeps the envelopes it got and gives the messages back parsed."""
    memory = MemoryTransport()
    envelope = Envelope.from_message(make_message(5, bcc="hidden@example.com"))

    memory.send(envelope)
    [message] = memory.messages

    assert [envelope] == memory.envelopes
    assert isinstance(message, EmailMessage)
    assert "message 5" == message["Subject"]
    assert message["Bcc"] is None


def test_importing_mailreset_does_not_load_the_testing_layer() -> None:
    """The core never imports mailreset.testing (it is checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys, mailreset, mailreset.mailers, mailreset.spool\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('mailreset.testing'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[]" == result.stdout.strip()
