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
from mailreset.reset import (
    MemoryRateLimiter,
    MemoryUser,
    MemoryUserStore,
    NISTPasswordPolicy,
    PasswordPolicy,
    PasswordReset,
    RateLimiter,
    UserStore,
    normalize_email,
)
from mailreset.transports import SMTPSettings

__all__ = [
    "Attachment",
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
    "MemoryRateLimiter",
    "MemoryUser",
    "MemoryUserStore",
    "MessageBuilder",
    "NISTPasswordPolicy",
    "PasswordPolicy",
    "PasswordReset",
    "PermanentFailure",
    "QueueFull",
    "RateLimiter",
    "Retry",
    "SMTPSettings",
    "StaleToken",
    "TemplateError",
    "TemporaryFailure",
    "UserStore",
    "WeakPassword",
    "envelope",
    "normalize_email",
    "wire_bytes",
]
