"""Exercises mailreset.rq under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

from concurrent.futures import Future
from email.message import EmailMessage

import rq

from mailreset.mailers import Delivery, Mailer, Retry
from mailreset.rq import JobFuture, RQMailer, configure_worker, deliver
from mailreset.transports import MemoryTransport

rq_mailer = RQMailer("redis://localhost:6379/0", retry=Retry(attempts=3), job_timeout=30)
as_mailer: Mailer = rq_mailer
job_future: JobFuture = rq_mailer.send(EmailMessage())
as_future: Future[Delivery] = job_future
job_id: str = job_future.job_id
rq_mailer.flush(timeout=5.0)
rq_mailer.close(timeout=None)
configure_worker(MemoryTransport, env_prefix="MAIL_")
# Under RQ, a temporary failure with attempts left returns an rq.Retry (RQ's public retry API).
result: dict[str, object] | rq.Retry = deliver("a@b.example", ["c@d.example"], b"...", "MAIL_")
