"""International addresses end to end: EAI local parts (RFC 6531), IDNA 2008 domains, SMTPUTF8."""

from __future__ import annotations

import email
import email.errors
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from mailreset import (
    Envelope,
    InvalidMessage,
    MemoryRateLimiter,
    MemoryUserStore,
    MessageBuilder,
    PasswordReset,
    PermanentFailure,
    SMTPTransport,
    SyncMailer,
    TokenService,
)
from mailreset._addresses import canonical_address, is_address
from mailreset.testing import extract_token
from mailreset.testing._smtp import free_port

SENDER = "Acme <no-reply@acme.example>"
RESET = {"url": "https://acme.example/reset/abc.def", "expires_minutes": 10, "app_name": "Acme"}
SECRET = "s3cret-key-for-tests-only-0123456789abcdef"
#: Python's parser flags every non-ASCII local part, RFC 6532 or not; nothing else may show.
EAI_DEFECT = email.errors.NonASCIILocalPartDefect


@pytest.fixture
def builder() -> MessageBuilder:
    return MessageBuilder(sender=SENDER)


def parse_strict(raw: bytes) -> EmailMessage:
    """``raw`` parsed back under ``policy.strict`` (UTF-8 headers, as RFC 6532 writes them)."""
    strict = email.policy.strict.clone(utf8=True)
    message = email.message_from_string(raw.decode("utf-8"), policy=strict)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        assert [] == part.defects
        for name, value in part.items():
            assert [] == [d for d in value.defects if not isinstance(d, EAI_DEFECT)], name
    return message


# -- the one address check ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("用户@example.test", "用户@example.test"),
        ("zoë.ünïcode+tag@example.de", "zoë.ünïcode+tag@example.de"),
        ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp"),
        ("用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d"),
        ("bob@Bücher.example", "bob@xn--bcher-kva.example"),
        ("bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example"),
        # IDNA 2008: ß is a letter of its own (IDNA 2003 and the stdlib codec made it "ss").
        ("bob@faß.de", "bob@xn--fa-hia.de"),
        ("bob@例子。测试", "bob@xn--fsqu00a.xn--0zwm56d"),  # UTS 46 maps the ideographic stop
        ("o'neil@example.com", "o'neil@example.com"),
    ],
)
def test_the_address_check_accepts_eai_local_parts_and_unicode_domains(
    given: str, expected: str
) -> None:
    """Non-ASCII local parts stay as given; Unicode domains become IDNA 2008 A-labels."""
    assert expected == canonical_address(given)


@pytest.mark.parametrize(
    "given",
    [
        "bob@☃.example",  # a symbol: valid in IDNA 2003, not in IDNA 2008
        "bob@xn--zz.example",  # an A-label that does not decode
        "用户 名@example.test",
        "用户\u3000名@example.test",  # ideographic space
        "用户\u200b名@example.test",  # zero-width space (a format character)
        "用户\u0085名@example.test",  # NEL, a C1 control
        "用户\u2028@example.test",
        "用户..名@example.test",
        ".用户@example.test",
        "用户.@example.test",
        "用" * 22 + "@example.test",  # 66 octets in UTF-8: over the 64 of RFC 5321
        "\ud800@example.test",
        "用户@例子..测试",
        "用户@",
        "用户",
        "用户@example.test, b@example.test",
    ],
)
def test_the_address_check_refuses_what_is_not_an_address(given: str) -> None:
    """Spaces, controls, format characters, empty atoms, long local parts, IDNA 2003-only
    domains and broken A-labels are InvalidMessage, everywhere the one check is used."""
    with pytest.raises(InvalidMessage):
        canonical_address(given)
    assert not is_address(given)
    with pytest.raises(InvalidMessage):
        MessageBuilder(sender=SENDER).build("reset_password", to=given, context=RESET)
    with pytest.raises(InvalidMessage, match="not an e-mail address"):
        Envelope(sender="a@example.test", recipients=(given,), data=b"x\r\n", smtputf8=True)


# -- builder and envelope -------------------------------------------------------------------


def test_an_eai_recipient_makes_an_smtputf8_envelope_whose_bytes_parse_strictly(
    builder: MessageBuilder,
) -> None:
    """The message keeps the UTF-8 address in its To header (RFC 6532); the envelope says
    SMTPUTF8; the bytes parse back under policy.strict with the same address and subject."""
    message = builder.build(
        "reset_password", to="张三 <用户@例子.测试>", context=RESET, bcc="审计@example.test"
    )

    envelope = Envelope.from_message(message)
    parsed = parse_strict(envelope.data)

    assert envelope.smtputf8
    assert ("用户@xn--fsqu00a.xn--0zwm56d", "审计@example.test") == envelope.recipients
    assert [("张三", "用户", "xn--fsqu00a.xn--0zwm56d")] == [
        (a.display_name, a.username, a.domain) for a in parsed["To"].addresses
    ]
    assert None is parsed["Bcc"]
    assert "Reset your Acme password" == parsed["Subject"]


def test_a_unicode_domain_alone_needs_no_smtputf8(builder: MessageBuilder) -> None:
    """An ASCII local part at a Unicode domain goes out as A-labels, in plain 7-bit mail."""
    message = builder.build("reset_password", to="bob@bücher.example", context=RESET)

    envelope = Envelope.from_message(message)

    assert not envelope.smtputf8
    assert ("bob@xn--bcher-kva.example",) == envelope.recipients
    assert envelope.data.isascii()


def test_a_message_made_elsewhere_gets_a_labels_in_its_envelope() -> None:
    """Envelope.from_message puts a Unicode domain of any message into A-labels."""
    message = EmailMessage()
    message["From"] = "app@example.test"
    message["To"] = "bob@bücher.example"
    message.set_content("hi")

    envelope = Envelope.from_message(message)

    assert ("bob@xn--bcher-kva.example", False) == (envelope.recipients[0], envelope.smtputf8)


# -- over SMTP ------------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
def test_an_eai_message_goes_through_aiosmtpd_with_smtputf8(
    builder: MessageBuilder, pipelining: bool
) -> None:
    """SMTPTransport says SMTPUTF8 to a server that offers it (pipelined or step by step);
    what aiosmtpd receives has the UTF-8 envelope and parses back under policy.strict."""
    from mailreset.testing import SMTPSink

    message = builder.build("reset_password", to="Zoë <zoë@exämple.test>", context=RESET)
    with SMTPSink(pipelining=pipelining) as sink, SMTPTransport(sink.settings) as transport:
        delivery = transport.send(Envelope.from_message(message))
        [received] = sink.wait_for(1)

    parsed = parse_strict(received.raw)
    assert ("zoë@xn--exmple-cua.test",) == delivery.accepted == received.envelope_to
    assert ["zoë@xn--exmple-cua.test"] == [a.addr_spec for a in parsed["To"].addresses]
    assert ("Reset your Acme password", ("zoë@xn--exmple-cua.test",)) == (
        received.subject,
        received.to,
    )
    assert RESET["url"] in received.links


@pytest.fixture
def no_smtputf8_server() -> Iterator[tuple[str, int, list[Any]]]:
    """An aiosmtpd server that does not offer SMTPUTF8, recording what it accepts."""
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Recorder:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(
        Recorder(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=False, decode_data=False
    )
    controller.start()
    try:
        yield "127.0.0.1", port, received
    finally:
        controller.stop()


def test_a_server_without_smtputf8_is_a_permanent_failure_naming_it(
    builder: MessageBuilder, no_smtputf8_server: tuple[str, int, list[Any]]
) -> None:
    """No SMTPUTF8 on the server: a PermanentFailure that names SMTPUTF8 and the address,
    nothing delivered, and the connection still carries the next (ASCII) message."""
    from mailreset import SMTPSettings

    host, port, received = no_smtputf8_server
    transport = SMTPTransport(SMTPSettings(host=host, port=port))
    try:
        with pytest.raises(PermanentFailure, match="SMTPUTF8") as caught:
            transport.send(
                Envelope.from_message(
                    builder.build("reset_password", to="用户@example.test", context=RESET)
                )
            )
        transport.send(
            Envelope.from_message(
                builder.build("reset_password", to="bob@example.test", context=RESET)
            )
        )
    finally:
        transport.close()

    assert "用户@example.test" in str(caught.value)
    assert not caught.value.maybe_delivered
    assert [["bob@example.test"]] == [envelope.rcpt_tos for envelope in received]


# -- the reset flow -------------------------------------------------------------------------


@pytest.fixture
def make_flow(mail_outbox: Any) -> Iterator[Callable[[MemoryUserStore], PasswordReset[Any]]]:
    made: list[PasswordReset[Any]] = []

    def make(users: MemoryUserStore, **options: Any) -> PasswordReset[Any]:
        flow: PasswordReset[Any] = PasswordReset(
            TokenService(SECRET),
            MessageBuilder(sender="Example <noreply@app.example>"),
            options.pop("mailer", mail_outbox),
            users,
            reset_url="https://app.example/reset/{token}",
            app_name="Example",
            limiter=MemoryRateLimiter(),
            **options,
        )
        made.append(flow)
        return flow

    yield make
    for flow in made:
        flow.close(timeout=10)


def test_password_reset_handles_an_eai_user_like_any_other(
    make_flow: Callable[[MemoryUserStore], PasswordReset[Any]],
    mail_outbox: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user whose address is 用户@例子.测试 gets the reset mail, and its link resets the
    password; nothing is logged as an error on the way."""
    users = MemoryUserStore()
    users.add("用户@例子.测试", "old password 1")
    flow = make_flow(users)

    flow.request("用户@例子.测试")
    assert flow.flush(timeout=10)
    [message] = mail_outbox.wait_for(1)
    token = extract_token(message, "https://app.example/reset/")
    user = flow.complete(token, "a new and long passphrase")

    assert ("用户@xn--fsqu00a.xn--0zwm56d",) == message.envelope_to
    assert ("用户@xn--fsqu00a.xn--0zwm56d",) == message.to
    assert "Reset your Example password" == message.subject
    assert "用户@例子.测试" == users.email(user)
    assert [] == [record for record in caplog.records if record.levelname == "ERROR"]


def test_password_reset_sends_an_eai_user_mail_over_smtp(
    make_flow: Callable[..., PasswordReset[Any]], smtp_sink: Any
) -> None:
    """The whole flow through a real SMTP hop: the mail reaches the sink with SMTPUTF8."""
    users = MemoryUserStore()
    users.add("Zoë@exämple.test", "old password 1")
    with SyncMailer(SMTPTransport(smtp_sink.settings)) as mailer:
        flow = make_flow(users, mailer=mailer)
        flow.request("zoë@exämple.test")
        assert flow.flush(timeout=10)
        [received] = smtp_sink.wait_for(1)

    assert ("Zoë@xn--exmple-cua.test",) == received.envelope_to
    assert received.links[0].startswith("https://app.example/reset/")
    parse_strict(received.raw)
