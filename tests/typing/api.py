"""Exercises the public API under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

from datetime import datetime, timedelta

import mailreset
from mailreset.mailers import Delivery, Retry
from mailreset.transports import SMTPSettings

settings: SMTPSettings = SMTPSettings.from_env()
retry: Retry = Retry(attempts=3, initial=0.1)
delivery = Delivery(message_id="<a@b>", envelope_from="a@b", accepted=("c@d",))
accepted: tuple[str, ...] = delivery.accepted
error: mailreset.MailresetError = mailreset.QueueFull("full")

tokens = mailreset.TokenService(["a" * 32, b"b" * 32], max_age=timedelta(minutes=10), leeway=5)
token: str = tokens.issue("reset_password", 42, bind="hash", extra={"email": "a@b"})
claims: mailreset.Claims = tokens.verify(token, "reset_password", bind=lambda subject: None)
subject: str = claims.subject
expires_at: datetime = claims.expires_at
stale: mailreset.InvalidToken = mailreset.StaleToken("used")
