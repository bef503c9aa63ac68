"""Every exception mailreset raises, in one tree.

.. code-block:: text

    MailresetError
     ├── InvalidToken                 the token is not good, for any reason
     │    ├── ExpiredToken            ... it was good, but its time is up
     │    └── StaleToken              ... it was good, but the bound state changed (used)
     ├── InvalidMessage (ValueError)  a message that must not be sent (header injection, ...)
     ├── TemplateError                a template is missing or used an undefined variable
     ├── DeliveryError                the server did not take the message
     │    ├── TemporaryFailure        4xx, refused or reset connection, timeout: retry later
     │    └── PermanentFailure        5xx, every recipient refused: do not retry
     ├── QueueFull                    the mailer's bounded queue stayed full
     ├── MailerClosed                 ``send`` after ``close``
     ├── MailerUnavailable            the mailer's backing service (Redis) did not answer
     ├── ConfigurationError (ValueError)  a bad setting, named, when the object is made
     └── WeakPassword (ValueError)    the password policy refused a new password

Catch :class:`MailresetError` to catch everything of ours; the built-in second bases let old
``except ValueError`` clauses keep working.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "ExpiredToken",
    "InvalidMessage",
    "InvalidToken",
    "MailerClosed",
    "MailerUnavailable",
    "MailresetError",
    "PermanentFailure",
    "QueueFull",
    "StaleToken",
    "TemplateError",
    "TemporaryFailure",
    "WeakPassword",
]


class MailresetError(Exception):
    """Base of every exception mailreset raises."""


class InvalidToken(MailresetError):
    """A token failed verification: malformed, forged, for another purpose, or unknown user.

    Attributes:
        original_error: the dependency's exception behind it, if any (diagnostics only).
    """

    def __init__(self, message: str, *, original_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.original_error = original_error


class ExpiredToken(InvalidToken):
    """A correctly signed token whose lifetime is over.

    Attributes:
        expired_at: when it expired (aware UTC), or None where it could not be read.
    """

    def __init__(
        self,
        message: str,
        *,
        expired_at: datetime | None = None,
        original_error: BaseException | None = None,
    ) -> None:
        super().__init__(message, original_error=original_error)
        self.expired_at = expired_at


class StaleToken(InvalidToken):
    """A correctly signed, unexpired token whose bound user state has changed.

    Typically the password was reset since the token was issued: the link was already used or
    a newer one superseded it.
    """


class InvalidMessage(MailresetError, ValueError):
    """A message that must not be sent: CR/LF in a header, a bad address, no recipient."""


class TemplateError(MailresetError):
    """A template could not be rendered: missing, a syntax error, or an undefined variable.

    Attributes:
        template: the template name involved.
    """

    def __init__(self, message: str, *, template: str | None = None) -> None:
        super().__init__(message)
        self.template = template


class DeliveryError(MailresetError):
    """The mail server did not accept a message.

    Attributes:
        smtp_code: the server's reply code, or None when no reply came (connection trouble).
        smtp_error: the server's reply text, or a description of the connection trouble.
        recipients: the refused recipients as ``address -> (code, text)``.
        original_error: the exception behind it, if any.
        maybe_delivered: True when the outcome is unknown: the connection broke after the
            message's final dot and before the server's reply, so the server may hold it.
            False means the server never accepted the message.
        every_message: True when the failure is about the connection or the settings, not
            this message (AUTH refused, a certificate that does not verify, a TLS mode
            mix-up): every message would fail the same way until the settings are fixed.

    .. versionchanged:: 0.1
       ``maybe_delivered`` and ``every_message``.
    """

    def __init__(
        self,
        message: str,
        *,
        smtp_code: int | None = None,
        smtp_error: str | None = None,
        recipients: Mapping[str, tuple[int, str]] | None = None,
        original_error: BaseException | None = None,
        maybe_delivered: bool = False,
        every_message: bool = False,
    ) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code
        self.smtp_error = smtp_error
        self.recipients: Mapping[str, tuple[int, str]] = dict(recipients or {})
        self.original_error = original_error
        self.maybe_delivered = maybe_delivered
        self.every_message = every_message


class TemporaryFailure(DeliveryError):
    """A failure worth retrying later: a 4xx reply, a refused or reset connection, a timeout."""


class PermanentFailure(DeliveryError):
    """A failure that retrying cannot fix: a 5xx reply, or every recipient refused."""


class QueueFull(MailresetError):
    """The mailer's bounded queue stayed full for the whole wait.

    Raise ``max_queue``, add ``workers``, or pass ``send(..., timeout=...)`` to wait longer.
    """


class MailerClosed(MailresetError):
    """``send`` was called on a mailer that is closed or closing."""


class MailerUnavailable(MailresetError):
    """The service behind a mailer (Redis, for ``RQMailer``) did not take the message.

    Nothing was enqueued; the caller still holds the message and decides what to do.
    """


class ConfigurationError(MailresetError, ValueError):
    """A setting that cannot work, named, raised when the object is made."""


class WeakPassword(MailresetError, ValueError):
    """The password policy refused a new password; the message says why.

    Attributes:
        reasons: every reason the policy gave, as short sentences.
    """

    def __init__(self, message: str, *, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons) or (message,)
