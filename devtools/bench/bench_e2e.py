"""A burst of reset emails end to end: token, templates, message, SMTP.

Ours: ``TokenService.issue`` (bound to the user's password hash), ``MessageBuilder.build`` of
the bundled ``reset_password`` templates (text and HTML) and ``ThreadedMailer.send`` with its
default settings, timed until ``close()`` returns (everything delivered).

The tutorial (Flask mega-tutorial, "Email Support"): PyJWT encode of
``{"reset_password": id, "exp": ...}``, ``render_template`` of a txt and an html template in a
Flask app context, a Flask-Mail ``Message``, and a thread and a new SMTP connection per
message; timed until every thread ended (bounded).

The server is the benchmarks' fast one (:func:`devtools.bench.servers.fast_server`: Postfix's
``smtp-sink`` when installed, else the aiosmtpd capture sink in a child process). Lost messages
are counted at the server after a bounded wait.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from devtools.bench.harness import Comparison, Options, interleaved_medians
from devtools.bench.servers import BenchServer, fast_server
from mailreset import SMTPSettings, ThreadedMailer
from mailreset.messages import MessageBuilder
from mailreset.tokens import TokenService

KEY = "bench-secret-key-with-enough-entropy-0123456789"
SENDER = "Bench App <app@example.com>"
RESET_URL = "https://app.example/reset/{token}"

#: The tutorial's two templates (app/templates/email/reset_password.{txt,html}).
TUTORIAL_TXT = """Dear {{ user.username }},

To reset your password click on the following link:

{{ url_for_reset }}

If you have not requested a password reset simply ignore this message.

Sincerely,

The Microblog Team
"""
TUTORIAL_HTML = """<!doctype html>
<html>
    <body>
        <p>Dear {{ user.username }},</p>
        <p>
            To reset your password
            <a href="{{ url_for_reset }}">
                click here
            </a>.
        </p>
        <p>Alternatively, you can paste the following link in your browser's address bar:</p>
        <p>{{ url_for_reset }}</p>
        <p>If you have not requested a password reset simply ignore this message.</p>
        <p>Sincerely,</p>
        <p>The Microblog Team</p>
    </body>
</html>
"""


class _User:
    def __init__(self, number: int) -> None:
        self.id = number
        self.username = f"user{number}"
        self.email = f"user{number}@example.com"
        self.password_hash = f"scrypt:32768:8:1$salt{number}$" + "0" * 64


def _ours(settings: SMTPSettings, users: list[_User]) -> Callable[[], None]:
    tokens = TokenService(KEY)
    builder = MessageBuilder(sender=SENDER)

    def burst() -> None:
        mailer = ThreadedMailer(settings)
        for user in users:
            token = tokens.issue("reset_password", user.id, bind=user.password_hash)
            message = builder.build(
                "reset_password",
                to=user.email,
                context={
                    "url": RESET_URL.format(token=token),
                    "expires_minutes": 10,
                    "app_name": "Bench",
                    "user_name": user.username,
                },
            )
            mailer.send(message)
        mailer.close(120)

    return burst


@contextlib.contextmanager
def _tutorial(
    settings: SMTPSettings, users: list[_User], deadline: float
) -> Iterator[Callable[[], None]]:
    import jwt
    from flask import Flask, render_template
    from flask_mail import Mail, Message

    with tempfile.TemporaryDirectory() as folder:
        templates = Path(folder) / "email"
        templates.mkdir()
        (templates / "reset_password.txt").write_text(TUTORIAL_TXT)
        (templates / "reset_password.html").write_text(TUTORIAL_HTML)
        app = Flask("tutorial", template_folder=folder)
        app.config.update(
            SECRET_KEY=KEY,
            MAIL_SERVER=settings.host,
            MAIL_PORT=settings.port,
            MAIL_DEFAULT_SENDER=SENDER,
        )
        mail = Mail(app)

        def send_async_email(message: Message) -> None:
            with app.app_context():
                mail.send(message)

        def send_email(
            subject: str, sender: str, recipients: list[str], text_body: str, html_body: str
        ) -> threading.Thread:
            message = Message(subject, sender=sender, recipients=recipients)
            message.body = text_body
            message.html = html_body
            thread = threading.Thread(target=send_async_email, args=(message,))
            thread.start()
            return thread

        def get_reset_password_token(user: _User, expires_in: int = 600) -> str:
            return jwt.encode(
                {"reset_password": user.id, "exp": time.time() + expires_in},
                app.config["SECRET_KEY"],
                algorithm="HS256",
            )

        def burst() -> None:
            threads = []
            with app.app_context():
                for user in users:
                    token = get_reset_password_token(user)
                    url = RESET_URL.format(token=token)
                    threads.append(
                        send_email(
                            "[Microblog] Reset Your Password",
                            sender=SENDER,
                            recipients=[user.email],
                            text_body=render_template(
                                "email/reset_password.txt", user=user, url_for_reset=url
                            ),
                            html_body=render_template(
                                "email/reset_password.html", user=user, url_for_reset=url
                            ),
                        )
                    )
            end = time.perf_counter() + deadline
            for thread in threads:
                thread.join(max(0.0, end - time.perf_counter()))

        yield burst


def _timed(server: BenchServer, count: int, burst: Callable[[], None], lost: list[int]):
    def measure() -> float:
        before = server.count()
        start = time.perf_counter()
        burst()
        elapsed = time.perf_counter() - start
        lost[0] += count - (server.wait_for(before + count, timeout=10) - before)
        return count / elapsed

    return measure


def run(options: Options) -> list[Comparison]:
    """Reset emails per second, end to end, ours against the tutorial; losses on both sides."""
    count = 500 if options.quick else 10_000
    rounds = 1 if options.quick else min(options.rounds, 3)
    users = [_User(number) for number in range(count)]
    server = fast_server()
    lost_ours, lost_tutorial = [0], [0]
    errors = [0]
    lock = threading.Lock()

    def count_errors(arguments: threading.ExceptHookArgs) -> None:
        with lock:
            errors[0] += 1

    threading.excepthook = count_errors
    try:
        with _tutorial(server.settings, users, deadline=120) as tutorial_burst:
            rates = interleaved_medians(
                {
                    "ours": _timed(server, count, _ours(server.settings, users), lost_ours),
                    "tutorial": _timed(server, count, tutorial_burst, lost_tutorial),
                },
                rounds,
            )
    finally:
        threading.excepthook = threading.__excepthook__
        server.close()
    sent = count * rounds
    return [
        Comparison(
            "End-to-end reset burst: mailreset vs tutorial",
            rates["ours"],
            rates["tutorial"],
            "PyJWT + render_template + Flask-Mail, thread + connection each",
            "msg/s",
            target=3.0,
            notes=[
                f"server: {server.name}; bursts of {count}, {rounds} round(s)",
                f"lost: ours {lost_ours[0]} of {sent}, tutorial {lost_tutorial[0]} of {sent} "
                f"({errors[0]} exceptions in its threads, only printed by default)",
                "stretch: 5x",
            ],
        )
    ]
