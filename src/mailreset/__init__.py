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
from mailreset.mailers import Delivery, Mailer, Retry, SyncMailer, ThreadedMailer
from mailreset.messages import Attachment, MessageBuilder, envelope, wire_bytes
from mailreset.reset import (
    MemoryRateLimiter,
    MemoryUser,
    MemoryUserStore,
    NISTPasswordPolicy,
    PasswordPolicy,
    PasswordReset,
    RateLimiter,
    SharedRateLimiter,
    UserStore,
    normalize_email,
)
from mailreset.spool import Spool
from mailreset.tokens import Claims, TokenService
from mailreset.transports import (
    Envelope,
    MemoryTransport,
    SMTPSettings,
    SMTPTransport,
    Transport,
)

__all__ = [
    "Attachment",
    "Claims",
    "ConfigurationError",
    "Delivery",
    "DeliveryError",
    "Envelope",
    "ExpiredToken",
    "InvalidMessage",
    "InvalidToken",
    "Mailer",
    "MailerClosed",
    "MailerUnavailable",
    "MailresetError",
    "MemoryRateLimiter",
    "MemoryTransport",
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
    "SMTPTransport",
    "SharedRateLimiter",
    "Spool",
    "StaleToken",
    "SyncMailer",
    "TemplateError",
    "TemporaryFailure",
    "ThreadedMailer",
    "TokenService",
    "Transport",
    "UserStore",
    "WeakPassword",
    "envelope",
    "normalize_email",
    "wire_bytes",
]
