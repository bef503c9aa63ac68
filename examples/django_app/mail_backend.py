"""A Django email backend over mailreset's mailers: copy this file into your project.

::

    # Django 6.1 and later
    MAILERS = {"default": {"BACKEND": "yourproject.mail_backend.EmailBackend", "OPTIONS": {...}}}
    # Django 4.2 to 6.0
    EMAIL_BACKEND = "yourproject.mail_backend.EmailBackend"

Django's ``send_mail``, ``send_mass_mail``, ``mail_admins`` (and so the error mails of
``AdminEmailHandler``), ``PasswordResetView`` and every ``EmailMessage.send()`` then go
through one :class:`~mailreset.mailers.ThreadedMailer` per process: persistent connections,
retries with backoff for temporary failures, an optional spool on disk, and nothing that waits
for the SMTP server in the request. With ``MAILRESET_RQ_URL`` set they go to RQ workers
instead (:class:`~mailreset.rq.RQMailer`).

Django's own settings: the default mailer's ``OPTIONS`` (``host``, ``port``, ``use_tls``
(STARTTLS, usually 587), ``use_ssl`` (implicit TLS, usually 465), ``username``, ``password``,
``timeout``; Django 6.1), or before 6.1 ``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_TLS``,
``EMAIL_USE_SSL``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_TIMEOUT``; options
given to the backend itself (a MAILERS alias's OPTIONS, ``get_connection(host=..., ...)``)
override them, as with Django's SMTP backend. And mailreset's settings: ``MAILRESET_SPOOL`` (a
folder: each message is on disk before ``send_messages`` returns, and a restarted process
sends what a crash left), ``MAILRESET_EXIT_TIMEOUT`` (seconds the process waits at exit to
deliver what is queued; 30), ``MAILRESET_RQ_URL`` (``redis://...``: enqueue to RQ; the workers
then read their own ``MAIL_*`` environment, and no SMTP setting or password goes into Redis),
``MAILRESET_RQ_QUEUE`` (``"mail"``), ``MAILRESET_ALLOW_PLAINTEXT_AUTH`` (AUTH without TLS to a
host that is not loopback: refused unless True).

What changes against Django's SMTP backend:

- ``send_messages`` returns the number of messages *accepted* (queued, or stored by Redis),
  not delivered: delivery happens after it returns. A message that finally fails is logged on
  the ``mailreset`` logger (it never carries the message's links); with a spool it stays on
  disk.
- ``fail_silently`` (an option of this backend; Django 6.1 deprecates the argument of
  ``send_mail``) covers only what happens in ``send_messages``: a message that cannot be
  queued (Django raising on it, an invalid address, a full queue, Redis away:
  ``MailerUnavailable``) is skipped, logged and not counted instead of raising. It cannot
  cover delivery, which has not happened yet; and it never hides a misconfiguration
  (``ConfigurationError``, naming the setting or option), which would lose every message.
- Connections belong to the process, not to the backend instance: ``open()`` and ``close()``
  (and ``with connection:``) do not connect or disconnect, and ``close()``
  never waits for SMTP. The process's mailer is closed at exit, and a normal exit first
  delivers what was accepted (up to ``MAILRESET_EXIT_TIMEOUT`` seconds). ``mailer()`` returns
  it, for code that wants a delivery's Future (``mailer().send(message)``) or to ``flush()``.
- Bcc reaches the envelope only, as with Django's backend; attachments, alternatives and
  headers are Django's own ``EmailMessage.message()``, byte for byte.
- TLS client certificates (``ssl_certfile``/``ssl_keyfile``, ``EMAIL_SSL_CERTFILE``/
  ``EMAIL_SSL_KEYFILE``) are not supported: a ``ConfigurationError`` says so rather than
  connecting without them.
"""

from __future__ import annotations

import atexit
import email.utils
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mailreset import (
    ConfigurationError,
    Envelope,
    InvalidMessage,
    Mailer,
    MailresetError,
    SMTPSettings,
    ThreadedMailer,
)

__all__ = ["EmailBackend", "mailer"]

logger = logging.getLogger("mailreset")

# The backend's options (Django 6.1's MAILERS OPTIONS names), their SMTPSettings fields and
# the EMAIL_* settings that held them before 6.1, so that an error names what to change.
_OPTIONS = {
    "host": ("SMTPSettings.host", "EMAIL_HOST", "localhost"),
    "port": ("SMTPSettings.port", "EMAIL_PORT", 25),
    "username": ("SMTPSettings.username", "EMAIL_HOST_USER", ""),
    "password": ("SMTPSettings.password", "EMAIL_HOST_PASSWORD", ""),
    "use_tls": ("SMTPSettings.starttls", "EMAIL_USE_TLS", False),
    "use_ssl": ("SMTPSettings.ssl", "EMAIL_USE_SSL", False),
    "timeout": ("SMTPSettings.timeout", "EMAIL_TIMEOUT", None),
}

_lock = threading.Lock()
_mailers: dict[tuple[Any, ...], Mailer] = {}


def _smtp_settings(options: Mapping[str, Any]) -> SMTPSettings:
    """SMTPSettings from Django's EMAIL_* values; errors name the Django settings."""
    try:
        return SMTPSettings(
            host=options["host"],
            port=options["port"],
            starttls=bool(options["use_tls"]),
            ssl=bool(options["use_ssl"]),
            username=options["username"] or None,
            password=options["password"] or None,
            timeout=10.0 if options["timeout"] is None else options["timeout"],
            allow_plaintext_auth=bool(options["allow_plaintext_auth"]),
        )
    except (ConfigurationError, TypeError, ValueError) as error:
        text = str(error).replace(
            "SMTPSettings.allow_plaintext_auth", "MAILRESET_ALLOW_PLAINTEXT_AUTH"
        )
        for option, (field, setting, _) in _OPTIONS.items():
            text = text.replace(field, f"the {option} option" if _uses_mailers() else setting)
        raise ConfigurationError(f"Django's mail settings: {text}") from None


def _uses_mailers() -> bool:
    """Django 6.1+ configured with MAILERS (then the EMAIL_* settings are gone)."""
    return hasattr(settings, "MAILERS")


def _configured() -> dict[str, Any]:
    """The options of Django's default mailer: its MAILERS OPTIONS, or the EMAIL_* settings."""
    if _uses_mailers():
        given = settings.MAILERS.get("default", {}).get("OPTIONS", {})
        return {option: given.get(option, default) for option, (*_, default) in _OPTIONS.items()}
    return {option: getattr(settings, name) for option, (_, name, _) in _OPTIONS.items()}


def _setting(*names: str) -> bool:
    """Whether any of the settings ``names`` is set to something."""
    return any(getattr(settings, name, None) for name in names)


def mailer(**overrides: Any) -> Mailer:
    """The process's mailer for the current settings (made on first use, closed at exit).

    ``overrides`` replace ``host``, ``port``, ``username``, ``password``, ``use_tls``,
    ``use_ssl`` and ``timeout`` of the default mailer's options (``MAILERS["default"]``'s
    OPTIONS on Django 6.1+, else the ``EMAIL_*`` settings). One mailer exists per distinct
    configuration (normally exactly one); tests that change the settings get a new one.
    """
    options = _configured()
    options["allow_plaintext_auth"] = getattr(settings, "MAILRESET_ALLOW_PLAINTEXT_AUTH", False)
    options.update({key: value for key, value in overrides.items() if value is not None})
    rq_url = getattr(settings, "MAILRESET_RQ_URL", None)
    spool = getattr(settings, "MAILRESET_SPOOL", None)
    if rq_url:
        key: tuple[Any, ...] = ("rq", rq_url, getattr(settings, "MAILRESET_RQ_QUEUE", "mail"))
    else:
        key = ("smtp", *sorted(options.items()), str(spool) if spool else None)
    with _lock:
        found = _mailers.get(key)
        if found is None:
            found = _mailers[key] = _make(key, options, spool)
        return found


def _make(key: tuple[Any, ...], options: Mapping[str, Any], spool: Any) -> Mailer:
    exit_timeout = float(getattr(settings, "MAILRESET_EXIT_TIMEOUT", 30.0))
    if key[0] == "rq":
        try:
            from mailreset.rq import RQMailer
        except ImportError as error:
            raise ConfigurationError(
                f"MAILRESET_RQ_URL is set but RQ is not installed: pip install 'mailreset[rq]' "
                f"({error})"
            ) from None
        queued = RQMailer(key[1], queue_name=key[2])
        # Redis holds what was accepted; at exit only the watcher thread stops.
        atexit.register(queued.close)
        return queued
    # drain_at_exit: a normal exit first delivers what was accepted (atexit, like logging).
    return ThreadedMailer(
        _smtp_settings(options),
        spool=spool or None,
        drain_at_exit=True,
        exit_timeout=exit_timeout,
    )


def _address(value: str) -> str:
    """The addr-spec of ``"Name <addr>"``; InvalidMessage unless it holds exactly one."""
    found = email.utils.getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise InvalidMessage(f"not one e-mail address: {value!r}")
    return found[0][1]  # the Envelope checks that it is an address


def to_envelope(message: EmailMessage) -> Envelope:
    """Django's message as mailreset's Envelope: Django's MIME, Bcc on the envelope only.

    The sender is ``from_email`` and the recipients are ``recipients()`` (to, cc, bcc), as
    Django's SMTP backend sends them; the bytes are ``message.message()``, checked and
    serialised by :meth:`Envelope.from_message` (CRLF line ends, no header line breaks).
    """
    mime = message.message()
    recipients = [_address(address) for address in message.recipients()]
    # A Bcc header makes a To-less message valid to from_message, which never writes it out.
    del mime["Bcc"]
    mime["Bcc"] = ", ".join(recipients)
    checked = Envelope.from_message(mime)
    return Envelope(
        sender=_address(message.from_email),
        recipients=tuple(recipients),
        data=checked.data,
        message_id=checked.message_id,
    )


class EmailBackend(BaseEmailBackend):
    """Django's email backend API over the process's mailreset mailer (see the module)."""

    def __init__(  # noqa: PLR0917 - positional, as Django's SMTP backend takes them
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Django 6.1 passes the mailer's alias (MAILERS) in kwargs and deprecates
        # fail_silently in BaseEmailBackend: it is this backend's own option here.
        super().__init__(**kwargs)
        self.fail_silently = fail_silently
        self.client_certificate = ssl_keyfile or ssl_certfile
        self.overrides = {
            "host": host,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": use_tls,
            "use_ssl": use_ssl,
            "timeout": timeout,
        }
        self.mailer: Mailer | None = None

    def open(self) -> bool:
        """Find (or make) the process's mailer; True the first time for this instance.

        Nothing connects here: the mailer's workers connect when there is mail to send.
        """
        if self.mailer is not None:
            return False
        if self.client_certificate or (
            not _uses_mailers() and _setting("EMAIL_SSL_CERTFILE", "EMAIL_SSL_KEYFILE")
        ):
            raise ConfigurationError(
                "EMAIL_SSL_CERTFILE and EMAIL_SSL_KEYFILE (TLS client certificates) are not "
                "supported by this backend; unset them (or use Django's SMTP backend)"
            )
        self.mailer = mailer(**self.overrides)
        return True

    def close(self) -> None:
        """Nothing to do: the connections are the process's, closed (drained) at exit."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue each message; return how many were accepted (not yet delivered).

        Messages without recipients are skipped, as by Django's SMTP backend.
        """
        if not email_messages:
            return 0
        self.open()
        assert self.mailer is not None
        accepted = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                self.mailer.send(to_envelope(message))
            except ConfigurationError:
                raise  # never silent: every later message would be lost the same way
            except (MailresetError, ValueError) as error:
                # ValueError: Django's BadHeaderError and its address errors.
                if not self.fail_silently:
                    raise
                logger.warning("Django mail not queued (fail_silently): %s", error)
                continue
            accepted += 1
        return accepted
