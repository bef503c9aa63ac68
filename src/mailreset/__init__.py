"""Password-reset and transactional email for Python web apps, done right and testable offline.

.. versionadded:: 0.1
"""

from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    ExpiredToken,
    InvalidMessage,
    InvalidToken,
    MailerClosed,
    MailerUnavailable,
    MailresetError,
    PermanentFailure,
    QueueFull,
    StaleToken,
    TemplateError,
    TemporaryFailure,
    WeakPassword,
)
from mailreset.mailers import Delivery, Mailer, Retry
from mailreset.messages import Attachment, MessageBuilder, envelope, wire_bytes
from mailreset.tokens import Claims, TokenService
from mailreset.transports import SMTPSettings

__all__ = [
    "Attachment",
    "Claims",
    "ConfigurationError",
    "Delivery",
    "DeliveryError",
    "ExpiredToken",
    "InvalidMessage",
    "InvalidToken",
    "Mailer",
    "MailerClosed",
    "MailerUnavailable",
    "MailresetError",
    "MessageBuilder",
    "PermanentFailure",
    "QueueFull",
    "Retry",
    "SMTPSettings",
    "StaleToken",
    "TemplateError",
    "TemporaryFailure",
    "TokenService",
    "WeakPassword",
    "envelope",
    "wire_bytes",
]
