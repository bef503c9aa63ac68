"""The Outbox behind mail_outbox: a validating, recording, thread-safe Mailer."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timezone
from email.message import EmailMessage, Message

import pytest

from mailreset import Delivery, InvalidMessage, Mailer, MailerClosed
from mailreset.testing import Outbox

FIXED = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _message(
    to: str = "ada@example.test", subject: str = "Reset your password", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <noreply@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<1@example.test>"
    for name, value in headers.items():
        message[name] = value
    message.set_content("Open https://app.example.test/reset/abc within 10 minutes.")
    return message


def test_outbox_is_a_mailer() -> None:
    """An Outbox satisfies the Mailer protocol."""
    assert isinstance(Outbox(), Mailer)


def test_send_records_a_copy_and_returns_a_done_delivery() -> None:
    """send() records the message and answers with a finished Future of its Delivery."""
    outbox = Outbox(clock=lambda: FIXED)
    message = _message()

    future = outbox.send(message)
    message.replace_header("Subject", "changed afterwards")

    expected = Delivery(
        message_id="<1@example.test>",
        envelope_from="noreply@example.test",
        accepted=("ada@example.test",),
    )
    assert expected == future.result(timeout=0)
    assert 1 == len(outbox)
    assert "Reset your password" == outbox.last.subject
    assert FIXED == outbox.last.received_at
    assert ("https://app.example.test/reset/abc",) == outbox.last.links


def test_bcc_reaches_the_envelope_but_not_the_bytes() -> None:
    """Bcc recipients are in the envelope; the recorded bytes carry no Bcc header."""
    outbox = Outbox()
    message = _message(Cc="cy@example.test", Bcc="hidden@example.test")

    delivery = outbox.send(message).result()

    expected = ("ada@example.test", "cy@example.test", "hidden@example.test")
    assert expected == delivery.accepted
    assert expected == outbox.last.envelope_to
    assert b"hidden@example.test" not in outbox.last.raw
    assert "hidden@example.test" == message["Bcc"]


def test_sender_header_wins_over_from() -> None:
    """The envelope sender is the Sender address when there is one, else From."""
    outbox = Outbox()

    outbox.send(_message(Sender="bounces@example.test"))

    assert "bounces@example.test" == outbox.last.envelope_from


def test_a_message_without_recipients_is_refused() -> None:
    """A message with no To, Cc or Bcc raises InvalidMessage and records nothing."""
    outbox = Outbox()
    message = _message()
    del message["To"]

    with pytest.raises(InvalidMessage, match="no recipient"):
        outbox.send(message)
    assert 0 == len(outbox)


def test_a_line_break_in_a_header_is_refused() -> None:
    """A header carrying CR or LF (header injection) raises InvalidMessage."""
    outbox = Outbox()
    message = Message()
    message["From"] = "app@example.test"
    message["To"] = "ada@example.test"
    message["Subject"] = "Hi\r\nBcc: victim@example.test"

    with pytest.raises(InvalidMessage, match="Subject"):
        outbox.send(message)
    assert [] == outbox.messages


def test_something_else_than_a_message_is_refused() -> None:
    """Sending a string raises TypeError (as every Mailer does), not an error from deep inside."""
    with pytest.raises(TypeError, match="str"):
        Outbox().send("To: ada@example.test\r\n\r\nhi")  # type: ignore[arg-type]


def test_find_filters_by_recipient_and_subject() -> None:
    """find() matches any envelope recipient (any case) and an exact or regex subject."""
    outbox = Outbox()
    outbox.send(_message("ada@example.test", "Reset your password"))
    outbox.send(_message("bob@example.test", "Your password was changed"))

    assert ["Reset your password"] == [m.subject for m in outbox.find(to="ADA@example.test")]
    assert 1 == len(outbox.find(subject="Your password was changed"))
    assert 2 == len(outbox.find(subject=re.compile("password")))
    assert [] == outbox.find(to="ada@example.test", subject="Your password was changed")


def test_last_on_an_empty_outbox_says_nothing_was_sent() -> None:
    """.last raises an AssertionError that says nothing was sent."""
    with pytest.raises(AssertionError, match="no message was sent"):
        _ = Outbox().last


def test_iteration_and_clear() -> None:
    """Iterating yields the messages oldest first; clear() empties the outbox."""
    outbox = Outbox()
    outbox.send(_message(subject="one"))
    outbox.send(_message(subject="two"))

    assert ["one", "two"] == [message.subject for message in outbox]
    outbox.clear()
    assert 0 == len(outbox)


def test_assert_sent_failure_lists_what_was_sent() -> None:
    """A failed assert_sent names the expectation and lists every message sent."""
    outbox = Outbox()
    outbox.send(_message("bob@example.test", "Welcome"))

    with pytest.raises(AssertionError) as caught:
        outbox.assert_sent(to="ada@example.test")

    expected = (
        "expected a message with to='ada@example.test', found 0; 1 message(s) were sent:\n"
        "  1. from='noreply@example.test' to=['bob@example.test'] subject='Welcome'"
    )
    assert expected == str(caught.value)


def test_assert_sent_returns_the_match_and_checks_the_count() -> None:
    """assert_sent returns the last match; with count it wants exactly that many."""
    outbox = Outbox()
    outbox.send(_message(subject="one"))
    outbox.send(_message(subject="two"))

    assert "two" == outbox.assert_sent(to="ada@example.test").subject
    with pytest.raises(AssertionError, match="expected 1 message"):
        outbox.assert_sent(to="ada@example.test", count=1)


def test_assert_not_sent() -> None:
    """assert_not_sent passes when nothing matches and lists the messages when some do."""
    outbox = Outbox()
    outbox.assert_not_sent()
    outbox.send(_message("bob@example.test"))

    outbox.assert_not_sent(to="ada@example.test")
    with pytest.raises(AssertionError, match=r"bob@example\.test"):
        outbox.assert_not_sent()


def test_wait_for_sees_mail_from_other_threads() -> None:
    """wait_for returns once messages sent by other threads arrived."""
    outbox = Outbox()
    threads = [
        threading.Thread(target=outbox.send, args=(_message(f"u{n}@example.test"),))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()

    arrived = outbox.wait_for(8, timeout=5)
    for thread in threads:
        thread.join()

    assert 8 == len(arrived)


def test_wait_for_timeout_lists_what_arrived() -> None:
    """A wait that times out raises TimeoutError listing the messages that did arrive."""
    outbox = Outbox()
    outbox.send(_message(subject="only one"))

    with pytest.raises(TimeoutError, match=r"(?s)expected 2 message.*got 1.*only one"):
        outbox.wait_for(2, timeout=0.01)


def test_send_after_close_is_refused() -> None:
    """A closed outbox raises MailerClosed, like every mailer."""
    outbox = Outbox()
    outbox.close()

    with pytest.raises(MailerClosed):
        outbox.send(_message())
