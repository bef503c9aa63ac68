"""The capture core: CapturedMessage, the capture server, its faults and the smtp_sink fixture."""

from __future__ import annotations

import smtplib
import threading
from email.message import EmailMessage

import pytest

from mailreset.testing import CapturedMessage, FaultPlan, SMTPSink, extract_links, extract_token


def _message(subject: str = "Reset your password", to: str = "ada@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <noreply@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Open https://app.example.test/reset/tok.en-1?x=1 within 10 minutes.")
    message.add_alternative(
        '<p><a href="https://app.example.test/reset/tok.en-1?x=1">Reset</a>'
        '<a href="mailto:help@example.test">help</a></p>',
        subtype="html",
    )
    return message


def test_captured_message_parses_lazily_from_bytes() -> None:
    """A capture keeps the raw bytes and reads the fields from them on demand."""
    raw = _message().as_bytes()
    captured = CapturedMessage.from_bytes(raw)

    assert raw == captured.raw
    assert "noreply@example.test" == captured.envelope_from
    assert ("ada@example.test",) == captured.envelope_to
    assert "Reset your password" == captured.subject
    assert "within 10 minutes" in captured.text
    assert "<a href" in captured.html
    assert ("https://app.example.test/reset/tok.en-1?x=1",) == captured.links


def test_extract_token_works_on_built_and_captured_messages() -> None:
    """extract_token reads the same token from an EmailMessage and from its capture."""
    message = _message()
    prefix = "https://app.example.test/reset/"

    assert "tok.en-1" == extract_token(message, prefix)
    assert "tok.en-1" == extract_token(CapturedMessage.from_message(message), prefix)
    assert extract_links(message) == CapturedMessage.from_message(message).links


def test_extract_token_failure_lists_the_links() -> None:
    """When no link matches, the assertion names the links that were there."""
    with pytest.raises(AssertionError, match=r"tok\.en-1"):
        extract_token(_message(), "https://elsewhere.test/")


def test_smtp_sink_captures_over_real_smtp(smtp_sink: SMTPSink) -> None:
    """A message sent with smtplib arrives at the fixture with its envelope."""
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.send_message(_message(), to_addrs=["ada@example.test", "hidden@example.test"])

    (captured,) = smtp_sink.wait_for(1, timeout=5)

    assert ("ada@example.test", "hidden@example.test") == captured.envelope_to
    assert "Reset your password" == captured.subject


@pytest.mark.parametrize("cte", ["7bit", "quoted-printable", "base64"])
def test_text_and_html_of_smtp_mail_have_newline_line_ends(smtp_sink: SMTPSink, cte: str) -> None:
    """Bodies that crossed SMTP (CRLF line ends) read back with \\n, as they were written."""
    text = "Hello,\n\nOpen https://app.example.test/reset/t0k\nwithin 10 minutes.\n"
    html = '<p>Hello,</p>\n<p><a href="https://app.example.test/reset/t0k">Reset</a></p>\n'
    message = EmailMessage()
    message["From"] = "App <noreply@example.test>"
    message["To"] = "ada@example.test"
    message["Subject"] = "Reset your password"
    message.set_content(text, cte=cte)
    message.add_alternative(html, subtype="html", cte=cte)
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.send_message(message)

    (captured,) = smtp_sink.wait_for(1, timeout=5)

    assert b"\r\n" in captured.raw
    assert text == captured.text
    assert html == captured.html


def test_smtp_sink_is_empty_for_each_test(smtp_sink: SMTPSink) -> None:
    """The session-wide server is emptied before every test."""
    assert [] == smtp_sink.messages
    assert smtp_sink.faults.is_quiet


def test_wait_for_names_what_arrived_on_timeout(smtp_sink: SMTPSink) -> None:
    """wait_for's TimeoutError lists the messages that did arrive."""
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.send_message(_message(subject="only one"))

    with pytest.raises(TimeoutError, match=r"(?s)expected 2 message.*got 1.*only one"):
        smtp_sink.wait_for(2, timeout=0.2)


def test_wait_for_wakes_for_mail_from_another_thread(smtp_sink: SMTPSink) -> None:
    """A waiter is woken by a message sent from another thread, without polling."""

    def send_later() -> None:
        with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
            client.send_message(_message())

    sender = threading.Timer(0.05, send_later)
    sender.start()
    try:
        assert 1 == len(smtp_sink.wait_for(1, timeout=5))
    finally:
        sender.join()


def test_tempfail_first_answers_451_then_accepts(smtp_sink: SMTPSink) -> None:
    """tempfail_first=N answers 451 to the first N messages only."""
    with (
        smtp_sink.faulty(tempfail_first=2),
        smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client,
    ):
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.send_message(_message())
            assert 451 == refused.value.smtp_code
        client.send_message(_message())

    assert 1 == len(smtp_sink.messages)


def test_reject_refuses_matching_recipients_with_550(smtp_sink: SMTPSink) -> None:
    """Recipients matching the reject glob get 550 at RCPT; the others are delivered."""
    with (
        smtp_sink.faulty(reject="*@blocked.test"),
        smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client,
    ):
        refused = client.send_message(
            _message(), to_addrs=["eve@blocked.test", "ada@example.test"]
        )

    assert {"eve@blocked.test"} == set(refused)
    assert 550 == refused["eve@blocked.test"][0]
    assert ("ada@example.test",) == smtp_sink.messages[0].envelope_to


def test_drop_after_data_closes_the_connection_and_stores_nothing(smtp_sink: SMTPSink) -> None:
    """drop_after_data hangs up instead of replying, and keeps nothing."""
    with (
        smtp_sink.faulty(drop_after_data=True),
        smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client,
        pytest.raises(smtplib.SMTPServerDisconnected),
    ):
        client.send_message(_message())

    assert [] == smtp_sink.messages


def test_fail_rate_is_repeatable_with_a_seed() -> None:
    """The same seed gives the same sequence of injected failures."""

    def outcomes() -> list[bool]:
        with (
            SMTPSink(faults=FaultPlan(fail_rate=0.5, seed=7)) as sink,
            smtplib.SMTP(sink.host, sink.port) as client,
        ):
            results = []
            for _ in range(12):
                try:
                    client.send_message(_message())
                    results.append(True)
                except smtplib.SMTPDataError:
                    results.append(False)
            return results

    first = outcomes()
    assert first == outcomes()
    assert True in first
    assert False in first


def test_max_size_answers_552() -> None:
    """A message over max_size is refused with 552."""
    with SMTPSink(max_size=1_000) as sink, smtplib.SMTP(sink.host, sink.port) as client:
        big = _message(subject="x" * 5_000)
        with pytest.raises(smtplib.SMTPException) as refused:
            client.send_message(big)
    assert "552" in str(refused.value)
