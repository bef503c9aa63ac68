"""Transports: one contract for MemoryTransport and SMTPTransport, then SMTP specifics."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

from mailreset import (
    Envelope,
    InvalidMessage,
    MemoryTransport,
    PermanentFailure,
    SMTPSettings,
    SMTPTransport,
    TemporaryFailure,
    Transport,
)
from mailreset.testing import CapturedMessage, SMTPSink
from mailreset.testing._smtp import free_port
from tests.mail_factory import make_envelope, make_message

Captured = Callable[[], list[CapturedMessage]]


class TransportContract:
    """What every Transport does; subclasses provide ``transport`` and ``captured``."""

    def test_is_a_transport(self, transport: Transport) -> None:
        """Every transport satisfies the runtime-checkable Transport protocol."""
        assert isinstance(transport, Transport)

    def test_send_delivers_with_the_envelope(
        self, transport: Transport, captured: Captured
    ) -> None:
        """The envelope is From -> To, Cc and Bcc; the delivery names the Message-ID."""
        message = make_message(1, cc="cc@example.com", bcc="hidden@example.com")

        delivery = transport.send(Envelope.from_message(message))
        [received] = captured()

        assert "<1.test@example.com>" == delivery.message_id
        assert "app@example.com" == delivery.envelope_from
        expected = ("user@example.com", "cc@example.com", "hidden@example.com")
        assert expected == delivery.accepted
        assert expected == received.envelope_to
        assert "app@example.com" == received.envelope_from
        assert "message 1" == received.subject

    def test_bcc_never_reaches_the_wire(self, transport: Transport, captured: Captured) -> None:
        """A Bcc header adds an envelope recipient and is stripped from the bytes."""
        message = make_message(2, bcc="hidden@example.com")

        transport.send(Envelope.from_message(message))
        [received] = captured()

        assert b"hidden@example.com" not in received.raw
        assert "hidden@example.com" == message["Bcc"]

    def test_sender_header_wins_over_from(self, transport: Transport, captured: Captured) -> None:
        """The Sender address, when present, is the envelope sender."""
        message = make_message(3)
        message["Sender"] = "bounces@example.com"

        delivery = transport.send(Envelope.from_message(message))

        assert "bounces@example.com" == delivery.envelope_from
        assert "bounces@example.com" == captured()[0].envelope_from

    def test_duplicate_recipients_are_sent_once(
        self, transport: Transport, captured: Captured
    ) -> None:
        """The same address in To and Bcc is one envelope recipient."""
        transport.send(make_envelope(4, to="a@example.com", bcc="A@example.com"))

        assert ("a@example.com",) == captured()[0].envelope_to

    def test_message_without_recipient_is_invalid(
        self, transport: Transport, captured: Captured
    ) -> None:
        """No To, Cc or Bcc: InvalidMessage, and nothing is sent."""
        message = make_message(5)
        del message["To"]

        with pytest.raises(InvalidMessage, match="no recipient"):
            transport.send(Envelope.from_message(message))
        assert [] == captured()

    def test_message_without_sender_is_invalid(self, transport: Transport) -> None:
        """No From and no Sender: InvalidMessage naming the problem."""
        message = make_message(6)
        del message["From"]

        with pytest.raises(InvalidMessage, match="no From"):
            transport.send(Envelope.from_message(message))

    @pytest.mark.parametrize("value", [make_message(1), b"To: a@example.com\r\n\r\nhi", None])
    def test_anything_but_an_envelope_is_a_type_error(
        self, transport: Transport, captured: Captured, value: object
    ) -> None:
        """A transport takes an Envelope; a message, bytes or None is a TypeError."""
        with pytest.raises(TypeError, match="Envelope"):
            transport.send(value)  # type: ignore[arg-type]
        assert [] == captured()

    def test_sends_again_after_close(self, transport: Transport, captured: Captured) -> None:
        """close() is not the end: the next send opens again."""
        transport.open()
        transport.send(make_envelope(7))
        transport.close()
        transport.send(make_envelope(8))

        assert ["message 7", "message 8"] == [message.subject for message in captured()]

    def test_lines_starting_with_a_dot_survive(
        self, transport: Transport, captured: Captured
    ) -> None:
        """Dot-stuffing is undone by the server: the body arrives as written."""
        transport.send(make_envelope(9, body=".hidden\n..two\nend\n"))

        # The capture keeps the wire's CRLF line ends in .text.
        assert ".hidden\n..two\nend\n" == captured()[0].text.replace("\r\n", "\n")


class TestMemoryTransport(TransportContract):
    """The contract, against the in-memory twin."""

    @pytest.fixture
    def memory(self) -> MemoryTransport:
        return MemoryTransport()

    @pytest.fixture
    def transport(self, memory: MemoryTransport) -> MemoryTransport:
        return memory

    @pytest.fixture
    def captured(self, memory: MemoryTransport) -> Captured:
        return lambda: [CapturedMessage.from_envelope(sent) for sent in memory.envelopes]

    def test_records_a_copy(self, memory: MemoryTransport) -> None:
        """Changing a message after sending does not change the record."""
        message = make_message(10)
        memory.send(Envelope.from_message(message))
        message.replace_header("Subject", "changed")

        assert "message 10" == memory.messages[0]["Subject"]

    def test_fail_next_raises_in_order(self, memory: MemoryTransport) -> None:
        """fail_next makes the next sends raise, then sending works again."""
        memory.fail_next(TemporaryFailure("busy"))

        with pytest.raises(TemporaryFailure, match="busy"):
            memory.send(make_envelope(11))
        memory.send(make_envelope(12))

        assert ["message 12"] == [message["Subject"] for message in memory.messages]


class TestSMTPTransport(TransportContract):
    """The contract, against SMTPTransport talking to the real aiosmtpd sink."""

    @pytest.fixture
    def transport(self, smtp_sink: SMTPSink) -> Iterator[SMTPTransport]:
        with SMTPTransport(smtp_sink.settings) as transport:
            yield transport

    @pytest.fixture
    def captured(self, smtp_sink: SMTPSink) -> Captured:
        return lambda: smtp_sink.messages

    def test_one_connection_for_many_messages(
        self, transport: SMTPTransport, smtp_sink: SMTPSink
    ) -> None:
        """Messages share one persistent connection."""
        for number in range(5):
            transport.send(make_envelope(number))

        assert 5 == len(smtp_sink.messages)
        assert 1 == transport.connections_opened

    def test_partially_refused_recipients_are_reported(
        self, transport: SMTPTransport, smtp_sink: SMTPSink
    ) -> None:
        """A 550 for one recipient lands in Delivery.refused; the others get the message."""
        with smtp_sink.faulty(reject="bad*"):
            delivery = transport.send(make_envelope(1, to="good@example.com, bad@example.com"))

        assert ("good@example.com",) == delivery.accepted
        assert ["bad@example.com"] == list(delivery.refused)
        assert 550 == delivery.refused["bad@example.com"][0]
        assert ("good@example.com",) == smtp_sink.messages[0].envelope_to

    def test_every_recipient_refused_is_permanent(
        self, transport: SMTPTransport, smtp_sink: SMTPSink
    ) -> None:
        """550 for every recipient: PermanentFailure listing them, and the connection lives on."""
        with smtp_sink.faulty(reject="*"), pytest.raises(PermanentFailure) as caught:
            transport.send(make_envelope(1, to="a@example.com, b@example.com"))
        transport.send(make_envelope(2))

        assert 550 == caught.value.smtp_code
        assert ["a@example.com", "b@example.com"] == sorted(caught.value.recipients)
        assert 1 == transport.connections_opened
        assert ["message 2"] == [message.subject for message in smtp_sink.messages]

    def test_tempfail_is_temporary(self, transport: SMTPTransport, smtp_sink: SMTPSink) -> None:
        """A 451 to DATA is a TemporaryFailure carrying the code."""
        with smtp_sink.faulty(tempfail_first=1), pytest.raises(TemporaryFailure) as caught:
            transport.send(make_envelope(1))
        transport.send(make_envelope(2))

        assert 451 == caught.value.smtp_code
        assert 1 == len(smtp_sink.messages)

    def test_drop_after_data_is_temporary_and_not_resent(
        self, transport: SMTPTransport, smtp_sink: SMTPSink
    ) -> None:
        """A connection lost after the content went out: TemporaryFailure, no silent resend."""
        transport.send(make_envelope(1))
        with smtp_sink.faulty(drop_after_data=True), pytest.raises(TemporaryFailure):
            transport.send(make_envelope(2))
        transport.send(make_envelope(3))

        assert ["message 1", "message 3"] == [m.subject for m in smtp_sink.messages]
        assert 2 == transport.connections_opened

    def test_slow_server_times_out(self, smtp_sink: SMTPSink) -> None:
        """A server slower than SMTPSettings.timeout gives a TemporaryFailure that says so."""
        settings = SMTPSettings(host=smtp_sink.host, port=smtp_sink.port, timeout=0.2)
        with (
            smtp_sink.faulty(delay=1.0),
            SMTPTransport(settings) as transport,
            pytest.raises(TemporaryFailure, match="in time"),
        ):
            transport.send(make_envelope(1))


@pytest.fixture(scope="module")
def pipelining_sink() -> Iterator[SMTPSink]:
    with SMTPSink(pipelining=True) as sink:
        yield sink


class TestPipelinedSMTPTransport(TransportContract):
    """The contract again, against a sink that advertises PIPELINING."""

    @pytest.fixture
    def transport(self, pipelining_sink: SMTPSink) -> Iterator[SMTPTransport]:
        pipelining_sink.clear()
        with SMTPTransport(pipelining_sink.settings) as transport:
            yield transport

    @pytest.fixture
    def captured(self, pipelining_sink: SMTPSink) -> Captured:
        return lambda: pipelining_sink.messages

    def test_uses_pipelining(self, transport: SMTPTransport) -> None:
        """Against a server that offers PIPELINING, the transport pipelines."""
        transport.open()

        assert transport.uses_pipelining

    def test_refusals_read_back_in_order(
        self, transport: SMTPTransport, pipelining_sink: SMTPSink
    ) -> None:
        """Pipelined replies map to the right recipients, and a full refusal is permanent."""
        with pipelining_sink.faulty(reject="bad*"):
            delivery = transport.send(make_envelope(1, to="bad1@example.com, ok@example.com"))
            with pytest.raises(PermanentFailure):
                transport.send(make_envelope(2, to="bad2@example.com"))
        transport.send(make_envelope(3))

        assert ("ok@example.com",) == delivery.accepted
        assert ["bad1@example.com"] == list(delivery.refused)
        assert ["message 1", "message 3"] == [m.subject for m in pipelining_sink.messages]


def test_reconnects_when_the_server_dropped_the_connection() -> None:
    """A reused connection the server closed is replaced within the same send."""
    port = free_port()
    transport = SMTPTransport(SMTPSettings(host="127.0.0.1", port=port))
    with SMTPSink(port=port) as first:
        transport.send(make_envelope(1))
        first.wait_for(1)
    with SMTPSink(port=port) as second:
        delivery = transport.send(make_envelope(2))

        assert ["message 2"] == [message.subject for message in second.messages]
    transport.close()

    assert 1 == delivery.attempts
    assert 2 == transport.connections_opened


def test_server_down_is_temporary() -> None:
    """Nobody listening: a TemporaryFailure naming the address."""
    port = free_port()
    transport = SMTPTransport(SMTPSettings(host="127.0.0.1", port=port, timeout=2))

    with pytest.raises(TemporaryFailure, match=f"127.0.0.1:{port}") as caught:
        transport.send(make_envelope(1))

    assert caught.value.smtp_code is None
    assert isinstance(caught.value.original_error, ConnectionRefusedError)


def test_settings_must_be_settings() -> None:
    """SMTPTransport refuses anything but SMTPSettings with a ConfigurationError."""
    from mailreset import ConfigurationError

    with pytest.raises(ConfigurationError, match="SMTPSettings"):
        SMTPTransport({"host": "x"})  # type: ignore[arg-type]


# -- TLS and AUTH ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


CREDENTIALS = {"app": "s3cret-app-password"}


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_and_auth(
    mode: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """STARTTLS and implicit TLS verify the test CA's certificate, then AUTH logs in."""
    options = {"starttls_context" if mode == "starttls" else "ssl_context": server_context}
    with SMTPSink(credentials=CREDENTIALS, **options) as sink:  # type: ignore[arg-type]
        settings = SMTPSettings(
            host="localhost",
            port=sink.port,
            starttls=mode == "starttls",
            ssl=mode == "ssl",
            username="app",
            password=CREDENTIALS["app"],
            ssl_context=client_context,
        )
        with SMTPTransport(settings) as transport:
            transport.send(make_envelope(1))
            transport.send(make_envelope(2))

        assert 2 == len(sink.wait_for(2))
        assert 1 == transport.connections_opened


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_untrusted_certificate_is_a_clear_permanent_failure(
    mode: str, server_context: ssl.SSLContext
) -> None:
    """The default context does not trust the test CA: PermanentFailure saying why."""
    options = {"starttls_context" if mode == "starttls" else "ssl_context": server_context}
    with SMTPSink(**options) as sink:  # type: ignore[arg-type]
        settings = SMTPSettings(
            host="localhost", port=sink.port, starttls=mode == "starttls", ssl=mode == "ssl"
        )
        with pytest.raises(PermanentFailure, match=r"certificate .* did not verify"):
            SMTPTransport(settings).send(make_envelope(1))

        assert [] == sink.messages


def test_wrong_password_is_permanent(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """AUTH refused with 535: a PermanentFailure that names the settings to check."""
    with SMTPSink(credentials=CREDENTIALS, starttls_context=server_context) as sink:
        settings = SMTPSettings(
            host="localhost",
            port=sink.port,
            starttls=True,
            username="app",
            password="wrong",
            ssl_context=client_context,
        )
        with pytest.raises(PermanentFailure, match="AUTH") as caught:
            SMTPTransport(settings).send(make_envelope(1))

    assert 535 == caught.value.smtp_code
    assert "wrong" not in str(caught.value)


def test_default_context_is_built_once() -> None:
    """Two TLS transports without a context share one default SSLContext."""
    from mailreset._connect import tls_context

    first = tls_context(SMTPSettings(starttls=True))
    second = tls_context(SMTPSettings(ssl=True, port=465))

    assert first is second
    assert ssl.CERT_REQUIRED == first.verify_mode
    assert first.check_hostname


def test_message_with_cr_lf_in_an_address_is_invalid() -> None:
    """An address header smuggling a line break is refused before sending."""
    from email.message import Message

    message = Message()
    message["From"] = "app@example.com"
    message["To"] = "user@example.com\r\nBcc: victim@example.com"

    with pytest.raises(InvalidMessage, match="CR or LF"):
        Envelope.from_message(message)


def test_compat32_message_is_sent(smtp_sink: SMTPSink) -> None:
    """A legacy email.message.Message goes out like an EmailMessage."""
    from email.mime.text import MIMEText

    legacy = MIMEText("hello")
    legacy["From"] = "app@example.com"
    legacy["To"] = "user@example.com"
    legacy["Subject"] = "legacy"

    with SMTPTransport(smtp_sink.settings) as transport:
        transport.send(Envelope.from_message(legacy))

    assert "legacy" == smtp_sink.wait_for(1)[0].subject
