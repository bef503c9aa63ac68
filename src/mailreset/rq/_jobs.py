"""The RQ job as plain data: what :class:`RQMailer` enqueues, what a worker records, what the
Future is settled from.

A job is a call of ``mailreset.rq.deliver(sender, recipients, data, env_prefix)`` (str, list of
str, bytes, str) and one entry of plain data in ``job.meta`` under :data:`META_KEY`:

- set by the producer: ``message_id``, ``enqueued_at`` (Unix time), and the retry policy as
  ``attempts``, ``initial``, ``maximum``, ``deadline`` (the fields of
  :class:`~mailreset.mailers.Retry`);
- kept by the worker: ``attempt`` (attempts started so far), ``in_flight`` (an attempt started
  and did not report: its worker died, so the server may hold the message), ``uncertain`` (an
  earlier attempt's outcome is unknown), and at the end either ``delivery`` or ``error``,
  with ``final`` once no attempt follows.

Nothing of the application's objects and no SMTP setting goes into Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from mailreset._delivery import Delivery, delivery_from_record
from mailreset.errors import DeliveryError, PermanentFailure, TemporaryFailure
from mailreset.mailers import Retry

__all__ = [
    "FAILURE_CALLBACK",
    "JOB_FUNCTION",
    "META_KEY",
    "failure_from",
    "failure_record",
    "new_meta",
    "outcome",
    "retry_interval",
    "retry_of",
]

#: The key of mailreset's own entry in ``job.meta`` (plain data only).
META_KEY = "mailreset"

#: The job function, by name: the worker imports it, and a job queued by one version of this
#: package stays runnable whatever module holds the function in the next.
JOB_FUNCTION = "mailreset.rq.deliver"

#: The jobs' RQ failure callback, by name (it counts the attempt of a worker that died).
FAILURE_CALLBACK = "mailreset.rq._worker.record_abandoned"

# Statuses after which a job never changes again (RQ's JobStatus values).
FINISHED = "finished"
FAILED = "failed"
GONE = frozenset({"stopped", "canceled"})


def new_meta(retry: Retry, message_id: str) -> dict[str, Any]:
    """The ``job.meta`` of a new job: the message's id and the retry policy, as plain data."""
    return {
        META_KEY: {
            "message_id": message_id,
            "enqueued_at": time.time(),
            "attempts": retry.attempts,
            "initial": float(retry.initial),
            "maximum": float(retry.maximum),
            "deadline": float(retry.deadline),
        }
    }


def retry_of(meta: Mapping[str, Any]) -> Retry:
    """The retry policy a job carries (one attempt when it carries none)."""
    try:
        return Retry(
            attempts=int(meta["attempts"]),
            initial=float(meta["initial"]),
            maximum=float(meta["maximum"]),
            deadline=float(meta["deadline"]),
        )
    except (KeyError, TypeError, ValueError):  # ConfigurationError is a ValueError
        return Retry(attempts=1)


def retry_interval(retry: Retry, attempt: int) -> int:
    """Whole seconds to wait after attempt number ``attempt`` (RQ schedules in seconds)."""
    return math.ceil(retry.ceiling(attempt))


def failure_record(error: Exception, kind: str, attempts: int) -> dict[str, Any]:
    """A failure as plain data for ``job.meta``: what the Future's error is rebuilt from."""
    recipients = getattr(error, "recipients", {}) or {}
    return {
        "kind": kind,
        "message": str(error),
        "smtp_code": getattr(error, "smtp_code", None),
        "smtp_error": getattr(error, "smtp_error", None),
        "recipients": {address: list(reply) for address, reply in recipients.items()},
        "attempts": attempts,
        "maybe_delivered": bool(getattr(error, "maybe_delivered", False)),
    }


def failure_from(job_id: str, record: Mapping[str, Any]) -> DeliveryError:
    """The error a failure record stands for, as the Future raises it."""
    kind = PermanentFailure if record.get("kind") == "permanent" else TemporaryFailure
    return kind(
        f"job {job_id}: {record.get('message', 'delivery failed')}",
        smtp_code=record.get("smtp_code"),
        smtp_error=record.get("smtp_error"),
        recipients={
            address: (int(code), str(text))
            for address, (code, text) in (record.get("recipients") or {}).items()
        },
        maybe_delivered=bool(record.get("maybe_delivered", False)),
    )


def outcome(
    job_id: str, status: str | None, meta: Mapping[str, Any]
) -> Delivery | DeliveryError | None:
    """How a job ended, from its RQ status and its meta; None while it may still change.

    A failure the worker marked final settles the Future at once, even while RQ still holds the
    job (it re-runs a failed job while its retry budget lasts; see :func:`deliver`).
    """
    delivery = meta.get("delivery")
    if status == FINISHED and isinstance(delivery, dict):
        return delivery_from_record(delivery)
    error = meta.get("error")
    if isinstance(error, dict) and (status == FAILED or meta.get("final")):
        return failure_from(job_id, error)
    if status is None:
        return DeliveryError(
            f"job {job_id} vanished from Redis before a worker reported on it "
            "(deleted, expired, or Redis lost it)"
        )
    if status in GONE or status in {FINISHED, FAILED}:
        return DeliveryError(
            f"job {job_id} ended {status} without a delivery (worker died with no retries "
            "left, job timeout, or stopped by hand): see RQ's failed job registry",
            maybe_delivered=bool(meta.get("in_flight") or meta.get("uncertain")),
        )
    return None
