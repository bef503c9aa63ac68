"""Exercises mailreset.testing's Outbox under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

import re
from concurrent.futures import Future
from email.message import EmailMessage

from mailreset.mailers import Delivery, Mailer
from mailreset.testing import CapturedMessage, Outbox

outbox = Outbox()
mailer: Mailer = outbox
future: Future[Delivery] = outbox.send(EmailMessage())
last: CapturedMessage = outbox.last
found: list[CapturedMessage] = outbox.find(to="a@example.test", subject=re.compile("Reset"))
arrived: list[CapturedMessage] = outbox.wait_for(count=2, timeout=1.0)
match: CapturedMessage = outbox.assert_sent(to="a@example.test", subject="Reset", count=1)
outbox.assert_not_sent(subject="Welcome")
size: int = len(outbox)
subjects: list[str] = [message.subject for message in outbox]
outbox.clear()
outbox.close()
