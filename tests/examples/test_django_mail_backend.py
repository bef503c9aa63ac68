"""The Django EMAIL_BACKEND over mailreset's mailers, against the real smtp_sink (and RQ)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("pytest_django")

from tests.examples.test_django_app import configure_for_tests, set_mail

configure_for_tests()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.views import PasswordResetView  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.mail import (  # noqa: E402
    EmailMessage,
    EmailMultiAlternatives,
    mail_admins,
    send_mail,
)
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils.log import AdminEmailHandler  # noqa: E402
from examples.django_app import mail_backend  # noqa: E402
from examples.django_app.mail_backend import EmailBackend  # noqa: E402

from mailreset import ConfigurationError, InvalidMessage, MailerUnavailable  # noqa: E402
from mailreset.testing import SMTPSink  # noqa: E402
from tests.rq_support import finish, start_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ATTACHMENT = bytes(range(256)) * 40  # binary, base64 on the wire

# PasswordResetView with its templates in memory: the example itself uses mailreset's flow.
urlpatterns = [
    path(
        "password_reset/",
        PasswordResetView.as_view(success_url="/done", extra_email_context={"via": "Django"}),
    )
]
RESET_TEMPLATES = {
    "registration/password_reset_form.html": "{{ form }}",
    "registration/password_reset_subject.txt": "Reset on {{ site_name }}",
    "registration/password_reset_email.html": (
        "{{ via }}: {{ protocol }}://{{ domain }}/reset/{{ uid }}/{{ token }}/"
    ),
}


@pytest.fixture
def django_mail(settings: Any, smtp_sink: SMTPSink) -> Any:
    """Django's mail settings pointed at smtp_sink through the mailreset backend."""
    set_mail(settings, host=smtp_sink.host, port=smtp_sink.port)
    settings.DEFAULT_FROM_EMAIL = "Example app <noreply@app.example>"
    mailer = mail_backend.mailer()
    yield settings
    assert mailer.flush(10)  # type: ignore[attr-defined]


def test_send_mail_is_queued_and_delivered(django_mail: Any, smtp_sink: SMTPSink) -> None:
    """send_mail returns 1 (accepted) and the message arrives with Django's headers."""
    sent = send_mail("Hello", "Body text.\n", None, ["Ada <ada@example.org>"])
    [message] = smtp_sink.wait_for(1)

    assert 1 == sent
    assert "noreply@app.example" == message.envelope_from
    assert ("ada@example.org",) == message.envelope_to
    assert ("Hello", "Body text.\n") == (message.subject, message.text)
    assert "Ada <ada@example.org>" == message.message["To"]


def test_alternatives_attachments_and_bcc_arrive_intact(
    django_mail: Any, smtp_sink: SMTPSink
) -> None:
    """HTML alternative, a binary attachment and headers survive; Bcc is envelope only."""
    message = EmailMultiAlternatives(
        "Report",
        "See the attachment.",
        to=["to@example.org"],
        cc=["cc@example.org"],
        bcc=["hidden@example.org"],
        headers={"X-Report": "42"},
    )
    message.attach_alternative("<p>See the <b>attachment</b>.</p>", "text/html")
    message.attach("data.bin", ATTACHMENT, "application/octet-stream")
    expected = message.message()

    assert 1 == message.send()
    [captured] = smtp_sink.wait_for(1)
    parts = {part.get_content_type(): part for part in captured.message.walk()}

    assert ("to@example.org", "cc@example.org", "hidden@example.org") == captured.envelope_to
    assert b"hidden@example.org" not in captured.raw
    assert "Bcc" not in captured.message
    assert "42" == captured.message["X-Report"]
    # Django 6 ends each part with a line break, Django 5 does not.
    assert "<p>See the <b>attachment</b>.</p>" == captured.html.rstrip("\n")
    assert "See the attachment." == captured.text.rstrip("\n")
    assert "data.bin" == parts["application/octet-stream"].get_filename()
    assert ATTACHMENT == parts["application/octet-stream"].get_content()
    assert [part.get_content_type() for part in expected.walk()] == [
        part.get_content_type() for part in captured.message.walk()
    ]


def _default_connection() -> Any:
    """Django's default mail connection: ``mailers.default`` from Django 6.1, which
    deprecates ``get_connection()``."""
    return mail.mailers.default if hasattr(mail, "mailers") else mail.get_connection()


def test_the_connection_is_a_context_manager_and_counts(
    django_mail: Any, smtp_sink: SMTPSink
) -> None:
    """send_messages returns how many it accepted; one without recipients is skipped."""
    messages = [
        EmailMessage("One", "1", to=["one@example.org"]),
        EmailMessage("None", "no recipient"),
        EmailMessage("Two", "2", to=["two@example.org"]),
    ]
    with _default_connection() as connection:
        sent = connection.send_messages(messages)
    arrived = smtp_sink.wait_for(2)

    assert isinstance(connection, EmailBackend)
    assert 2 == sent
    assert ["One", "Two"] == sorted(message.subject for message in arrived)


def test_backend_options_override_the_settings(django_mail: Any, smtp_sink: SMTPSink) -> None:
    """host/port given to the backend (get_connection's or MAILERS' options) win over the
    configured ones, as with Django's SMTP backend."""
    set_mail(django_mail, port=9)  # discard: nothing listens there on loopback
    connection = EmailBackend(host=smtp_sink.host, port=smtp_sink.port)

    assert 1 == connection.send_messages([EmailMessage("Hi", "x", to=["a@example.org"])])
    assert ("a@example.org",) == smtp_sink.wait_for(1)[0].envelope_to


def test_fail_silently_skips_what_cannot_be_queued(django_mail: Any, smtp_sink: SMTPSink) -> None:
    """A bad address raises InvalidMessage, or with fail_silently is skipped and not counted."""
    messages = [
        EmailMessage("Good 1", "x", to=["good1@example.org"]),
        EmailMessage("Bad", "x", to=["not an address"]),
        EmailMessage("Good 2", "x", to=["good2@example.org"]),
    ]
    with pytest.raises(InvalidMessage):
        EmailBackend().send_messages(messages[1:2])
    sent = EmailBackend(fail_silently=True).send_messages(messages)
    arrived = smtp_sink.wait_for(2)

    assert 2 == sent
    assert ["Good 1", "Good 2"] == sorted(message.subject for message in arrived)


def test_a_misconfiguration_is_never_silent(django_mail: Any) -> None:
    """A password in clear to a remote host is refused, naming Django's settings."""
    set_mail(django_mail, host="smtp.example.com", username="app", password="secret")
    quiet = EmailBackend(fail_silently=True)

    with pytest.raises(
        ConfigurationError,
        match=r"(EMAIL_HOST_USER|the username option).*(EMAIL_USE_TLS|the use_tls option)",
    ):
        quiet.send_messages([EmailMessage("Hi", "x", to=["a@example.org"])])


def test_client_certificates_are_refused_not_ignored(django_mail: Any) -> None:
    """EMAIL_SSL_CERTFILE is not supported: a clear error rather than a silent downgrade."""
    set_mail(django_mail, ssl_certfile="/etc/ssl/client.pem")

    with pytest.raises(ConfigurationError, match="EMAIL_SSL_CERTFILE"):
        send_mail("Hi", "x", None, ["a@example.org"])


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_password_reset_view_mails_through_the_backend(
    django_mail: Any, smtp_sink: SMTPSink
) -> None:
    """Django's own PasswordResetView sends its mail through mailreset's pool."""
    django_mail.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", RESET_TEMPLATES)]},
        }
    ]
    get_user_model().objects.create_user("ann", "ann@example.org", "a password 123")
    reply = Client().post("/password_reset/", {"email": "ann@example.org"})
    [message] = smtp_sink.wait_for(1)

    assert 302 == reply.status_code
    assert ("ann@example.org",) == message.envelope_to
    assert "Reset on testserver" == message.subject
    assert message.text.startswith("Django: http://testserver/reset/")


def test_mail_admins_and_the_admin_error_handler(django_mail: Any, smtp_sink: SMTPSink) -> None:
    """mail_admins and AdminEmailHandler (Django's error mails) reach ADMINS from SERVER_EMAIL."""
    logger = logging.getLogger("tests.django.errors")
    handler = AdminEmailHandler()
    logger.addHandler(handler)
    try:
        mail_admins("Disk full", "at 99%")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("Internal Server Error: /boom")
    finally:
        logger.removeHandler(handler)
    arrived = sorted(smtp_sink.wait_for(2), key=lambda message: message.subject)

    assert ["[Django] Disk full", "[Django] ERROR: Internal Server Error: /boom"] == [
        message.subject for message in arrived
    ]
    assert {("ops@app.example",)} == {message.envelope_to for message in arrived}
    assert {"errors@app.example"} == {message.envelope_from for message in arrived}
    assert "RuntimeError\nboom" in arrived[1].text


def _run_django(script: str, smtp_sink: SMTPSink, **settings: Any) -> str:
    """Run ``script`` in a new Python process with the example's settings (plus ``settings``)
    pointed at ``smtp_sink``; return its stdout, or fail with its stderr."""
    configure = f"configure(**mail_settings(host={smtp_sink.host!r}, port={smtp_sink.port})"
    configure += "".join(f", {name}={value!r}" for name, value in settings.items()) + ")"
    code = "from examples.django_app.settings import configure, mail_settings\n"
    code += configure + "\n" + script
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout


SEND_30 = textwrap.dedent(
    """
    from django.core.mail import send_mail
    sent = sum(send_mail(f"Mail {n}", "x", None, [f"user{n}@example.org"]) for n in range(30))
    print(sent, flush=True)
    """
)


def test_what_was_accepted_is_delivered_before_a_normal_exit(smtp_sink: SMTPSink) -> None:
    """A process that queues 30 mails and exits at once has delivered all 30 when it is gone."""
    with smtp_sink.faulty(delay=0.05):  # slow replies: most are still queued at exit
        printed = _run_django(SEND_30, smtp_sink)

    assert "30" == printed.strip()
    assert 30 == len(smtp_sink.messages)  # no waiting: delivered before the process ended


def test_with_a_spool_a_restarted_process_sends_what_a_crash_left(
    smtp_sink: SMTPSink, tmp_path: Path
) -> None:
    """MAILRESET_SPOOL: mails accepted by a process that then dies (os._exit, no atexit) while
    the server fails every try are sent by the next process that uses the backend."""
    spool = str(tmp_path / "spool")
    with smtp_sink.faulty(drop_after_data=True):  # nothing stored, every try fails
        printed = _run_django(
            SEND_30 + "import os; os._exit(0)\n", smtp_sink, MAILRESET_SPOOL=spool
        )
        stored_before = len(smtp_sink.messages)
    _run_django(
        "from examples.django_app import mail_backend\nmail_backend.mailer().flush(60)\n",
        smtp_sink,
        MAILRESET_SPOOL=spool,
    )

    assert ("30", 0) == (printed.strip(), stored_before)
    assert {f"Mail {n}" for n in range(30)} == {message.subject for message in smtp_sink.messages}


def test_redis_away_raises_or_with_fail_silently_counts_nothing(django_mail: Any) -> None:
    """With MAILRESET_RQ_URL and no Redis listening, send_mail raises MailerUnavailable at
    once; with fail_silently it returns 0 (logged) instead."""
    pytest.importorskip("rq")
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        django_mail.MAILRESET_RQ_URL = f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
        with pytest.raises(MailerUnavailable):
            send_mail("Lost?", "x", None, ["a@example.org"])
        quiet = EmailBackend(fail_silently=True)
        assert 0 == quiet.send_messages([EmailMessage("Lost?", "x", to=["a@example.org"])])
    del django_mail.MAILRESET_RQ_URL


@pytest.mark.redis
def test_rq_when_configured(
    django_mail: Any, smtp_sink: SMTPSink, redis_server: Any, tmp_path: Path
) -> None:
    """With MAILRESET_RQ_URL, send_mail enqueues; an RQ worker with its own MAIL_* delivers."""
    pytest.importorskip("rq")
    django_mail.MAILRESET_RQ_URL = redis_server.url

    sent = send_mail("Via RQ", "x", None, ["rq@example.org"])
    log = tmp_path / "worker.log"
    finish([start_worker(redis_server.url, smtp_sink.host, smtp_sink.port, log)], 120, log)
    [message] = smtp_sink.wait_for(1)

    assert 1 == sent
    assert ("Via RQ", ("rq@example.org",)) == (message.subject, message.envelope_to)
    assert mail_backend.mailer().flush(10) is None  # type: ignore[attr-defined]
    del django_mail.MAILRESET_RQ_URL
