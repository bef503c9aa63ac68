"""Small messages for the transport, mailer and spool tests."""

from __future__ import annotations

from email.message import EmailMessage

from mailreset.transports import Envelope


def make_message(
    number: int = 0,
    *,
    to: str = "user@example.com",
    cc: str | None = None,
    bcc: str | None = None,
    sender: str = "app@example.com",
    body: str = "Reset your password: https://app.example.com/reset/TOKEN\n",
) -> EmailMessage:
    """A plain-text message whose Subject and Message-ID carry ``number``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc is not None:
        message["Cc"] = cc
    if bcc is not None:
        message["Bcc"] = bcc
    message["Subject"] = f"message {number}"
    message["Message-ID"] = f"<{number}.test@example.com>"
    message.set_content(body)
    return message


def make_envelope(number: int = 0, **options: str) -> Envelope:
    """:func:`make_message`, checked and serialised as a transport receives it."""
    return Envelope.from_message(make_message(number, **options))  # type: ignore[arg-type]
