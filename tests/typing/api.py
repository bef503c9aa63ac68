"""Exercises the public API under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

import gettext
from datetime import datetime, timedelta
from email.message import EmailMessage

import jinja2

import mailreset
from mailreset.dkim import DKIMSigner
from mailreset.mailers import Delivery, Retry
from mailreset.messages import Attachment, MessageBuilder, envelope, wire_bytes
from mailreset.transports import SMTPSettings

settings: SMTPSettings = SMTPSettings.from_env()
retry: Retry = Retry(attempts=3, initial=0.1)
delivery = Delivery(message_id="<a@b>", envelope_from="a@b", accepted=("c@d",))
accepted: tuple[str, ...] = delivery.accepted
error: mailreset.MailresetError = mailreset.QueueFull("full")

# -- messages

builder = MessageBuilder(sender="Acme <no-reply@acme.example>", locale="zh_Hans")
from_folder = MessageBuilder("templates", sender="a@b.example", reply_to=["c@d.example"])
from_env = MessageBuilder(
    jinja2.Environment(), sender="a@b.example", translations=gettext.NullTranslations()
)
logo = Attachment(filename="logo.png", content=b"...", content_id="logo")
message: EmailMessage = builder.build(
    "reset_password",
    to="bob@example.com",
    context={"url": "https://a.example/r/t", "expires_minutes": 10, "app_name": "Acme"},
    bcc=["audit@acme.example"],
    headers={"X-Campaign": "reset"},
    attachments=[logo],
)
envelope_from, recipients = envelope(message)
raw: bytes = wire_bytes(message)
is_inline: bool = logo.inline

# -- tokens

tokens = mailreset.TokenService(["a" * 32, b"b" * 32], max_age=timedelta(minutes=10), leeway=5)
token: str = tokens.issue("reset_password", 42, bind="hash", extra={"email": "a@b"})
claims: mailreset.Claims = tokens.verify(token, "reset_password", bind=lambda subject: None)
subject: str = claims.subject
expires_at: datetime = claims.expires_at
stale: mailreset.InvalidToken = mailreset.StaleToken("used")

# -- dkim

memory = mailreset.MemoryTransport()
signer = DKIMSigner("mail", "acme.example", "-----BEGIN PRIVATE KEY-----...", transport=memory)
signed: mailreset.Envelope = signer.sign(mailreset.Envelope.from_message(message))
signing_transport: mailreset.Transport = signer
signing_mailer = mailreset.ThreadedMailer(
    lambda: DKIMSigner(
        "mail", "acme.example", b"...", algorithm="ed25519-sha256", transport=memory
    )
)
