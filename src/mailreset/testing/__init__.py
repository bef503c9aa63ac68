"""Test tooling for apps that send mail: captures, fixtures and helpers.

The pytest plugin (entry point ``mailreset``) adds the ``mail_outbox`` and ``smtp_sink``
fixtures; nothing here is autouse. Every capture is thread-safe, so mail sent by
:class:`~mailreset.mailers.ThreadedMailer` workers is recorded like mail sent inline.

:class:`SMTPSink` and :class:`FaultPlan` need the ``testing`` extra (aiosmtpd); they are
imported on first use so the rest works without it.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailreset.testing._capture import CapturedMessage, extract_links, extract_token
from mailreset.testing._outbox import Outbox
from mailreset.testing._store import CaptureStore

if TYPE_CHECKING:
    from mailreset.testing._smtp import FaultPlan, SMTPSink

__all__ = [
    "CaptureStore",
    "CapturedMessage",
    "FaultPlan",
    "Outbox",
    "SMTPSink",
    "extract_links",
    "extract_token",
]

_NEEDS_AIOSMTPD = {"FaultPlan", "SMTPSink"}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_AIOSMTPD:
        from mailreset.testing import _smtp

        return getattr(_smtp, name)
    raise AttributeError(f"module 'mailreset.testing' has no attribute {name!r}")
