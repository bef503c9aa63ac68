"""The anchor every sending benchmark compares with: the tutorial's ``send_email``.

A new thread per message, each opening its own Flask-Mail connection (with STARTTLS and a
login when the settings ask for them), exactly the pattern mailreset replaces.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage

from mailreset import SMTPSettings


@contextlib.contextmanager
def tutorial_sender(
    settings: SMTPSettings,
) -> Iterator[Callable[[EmailMessage], threading.Thread]]:
    """``send(message) -> started thread``: the tutorial's thread and connection per message.

    The Message-ID is kept, so a sink can count what arrived of each burst.
    """
    from flask import Flask
    from flask_mail import Mail, Message

    app = Flask("tutorial")
    app.config.update(
        MAIL_SERVER=settings.host,
        MAIL_PORT=settings.port,
        MAIL_USE_TLS=settings.starttls,
        MAIL_USERNAME=settings.username,
        MAIL_PASSWORD=settings.password,
        MAIL_DEFAULT_SENDER="app@example.com",
    )
    mail = Mail(app)

    def send_async_email(message: Message) -> None:
        with app.app_context():
            mail.send(message)

    def send(source: EmailMessage) -> threading.Thread:
        message = Message(
            subject=str(source["Subject"]),
            sender=str(source["From"]),
            recipients=[str(source["To"])],
            body=source.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
            html=source.get_body(("html",)).get_content(),  # type: ignore[union-attr]
        )
        message.msgId = str(source["Message-ID"])
        thread = threading.Thread(target=send_async_email, args=(message,))
        thread.start()
        return thread

    yield send
