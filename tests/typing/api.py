"""Exercises the public API under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

import mailreset
from mailreset.mailers import Delivery, Retry
from mailreset.transports import SMTPSettings

settings: SMTPSettings = SMTPSettings.from_env()
retry: Retry = Retry(attempts=3, initial=0.1)
delivery = Delivery(message_id="<a@b>", envelope_from="a@b", accepted=("c@d",))
accepted: tuple[str, ...] = delivery.accepted
error: mailreset.MailresetError = mailreset.QueueFull("full")
