"""Exercises mailreset.celery under mypy --strict (never run, only type-checked)."""

from __future__ import annotations

from concurrent.futures import Future
from email.message import EmailMessage
from typing import Any

from mailreset.celery import (
    CeleryMailer,
    TaskFuture,
    configure_worker,
    deliver,
    envelope_from_payload,
    job_payload,
    make_app,
    register_task,
)
from mailreset.mailers import Delivery, Mailer, Retry
from mailreset.transports import Envelope, MemoryTransport

celery_mailer = CeleryMailer(
    "redis://localhost:6379/0", queue="mail", retry=Retry(attempts=3), publish_timeout=1.0
)
as_mailer: Mailer = celery_mailer
task_future: TaskFuture = celery_mailer.send(EmailMessage())
as_future: Future[Delivery] = task_future
task_id: str = task_future.task_id
celery_mailer.flush(timeout=5.0)
celery_mailer.close(timeout=None)
app = make_app("redis://localhost:6379/0", visibility_timeout=30.0)
on_app = CeleryMailer(app)
task: Any = register_task(app)
configure_worker(MemoryTransport, env_prefix="MAIL_")
payload: dict[str, Any] = job_payload(
    Envelope.from_message(EmailMessage()), env_prefix="MAIL_", retry=Retry()
)
envelope: Envelope = envelope_from_payload(payload)
result: dict[str, Any] = deliver(payload, attempt=2)
