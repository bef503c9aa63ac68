"""The worker side: RQ's job function :func:`deliver` and the transport it keeps per process.

Retries go through RQ's public retry API only:

- a temporary failure with attempts and time left makes :func:`deliver` *return*
  ``rq.Retry(...)``: RQ schedules the job again after the backoff (``--with-scheduler``);
- the ``rq.Retry`` given at enqueue time is a small budget for a job whose worker died or was
  killed mid-job (RQ's abandoned job handling), and :func:`record_abandoned`, the job's failure
  callback, counts that lost attempt;
- a permanent failure, or the last temporary one, is raised: the job fails with its traceback
  in RQ's failed job registry. RQ re-runs a job that raised while the enqueue-time budget
  lasts, and RQ's public API gives a job no way to end that budget; so a re-run of a job whose
  outcome is final raises the recorded failure again at once, without contacting the server,
  and :class:`~mailreset.rq.RQMailer` settles the Future from the first final record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import rq
import rq.exceptions
import rq.job

from mailreset._delivery import delivery_record
from mailreset._envelope import Envelope
from mailreset.errors import InvalidMessage, PermanentFailure, TemporaryFailure
from mailreset.rq._jobs import (
    META_KEY,
    failure_from,
    failure_record,
    retry_interval,
    retry_of,
)
from mailreset.transports import Transport

__all__ = ["configure_worker", "deliver", "record_abandoned"]

log = logging.getLogger("mailreset")

#: One transport per environment prefix, per worker process, opened lazily, kept across jobs.
_transports: dict[str, Transport] = {}
_factories: dict[str, Callable[[], Transport]] = {}
_transports_lock = threading.Lock()


def configure_worker(factory: Callable[[], Transport], *, env_prefix: str = "MAIL_") -> None:
    """Worker side: make jobs sent with ``env_prefix`` use ``factory()`` as their transport.

    Without it, a worker builds ``SMTPTransport(SMTPSettings.from_env(env_prefix))``. Call it
    from a small worker script (before ``Worker.work()``) to pass what the environment cannot
    hold, such as an ``ssl_context``. The transport is made at the first job and kept.

    .. versionadded:: 0.1
    """
    with _transports_lock:
        _factories[env_prefix] = factory
        old = _transports.pop(env_prefix, None)
    if old is not None:
        old.close()


def _default_factory(env_prefix: str) -> Callable[[], Transport]:
    def make() -> Transport:
        from mailreset.transports import SMTPSettings, SMTPTransport

        return SMTPTransport(SMTPSettings.from_env(env_prefix))

    return make


def _transport(env_prefix: str) -> Transport:
    with _transports_lock:
        transport = _transports.get(env_prefix)
        if transport is None:
            factory = _factories.get(env_prefix) or _default_factory(env_prefix)
            transport = factory()
            _transports[env_prefix] = transport
    return transport


def _discard(env_prefix: str) -> None:
    with _transports_lock:
        transport = _transports.pop(env_prefix, None)
    if transport is not None:
        try:
            transport.close()
        except Exception:  # a broken connection may fail to say QUIT; it is dropped anyway
            log.debug("mailreset.rq: closing a discarded transport failed", exc_info=True)


def _entry(job: rq.job.Job | None) -> dict[str, Any]:
    """mailreset's entry in ``job.meta`` (a fresh dict outside RQ or for a foreign job)."""
    if job is None:
        return {}
    entry = job.meta.setdefault(META_KEY, {})
    if not isinstance(entry, dict):
        entry = job.meta[META_KEY] = {}
    return entry


def deliver(
    sender: str, recipients: list[str], data: bytes, env_prefix: str = "MAIL_"
) -> dict[str, Any] | rq.Retry:
    """Worker side, RQ's job function: send one enqueued message; return the delivery as a dict.

    The transport is kept per worker process (see :func:`configure_worker`). A
    :class:`~mailreset.errors.TemporaryFailure` with attempts and time left returns an
    ``rq.Retry`` (RQ runs the job again after the backoff); the last one, a
    :class:`~mailreset.errors.PermanentFailure` or an :class:`~mailreset.errors.InvalidMessage`
    is raised and fails the job. Either way the reason is kept in ``job.meta`` for
    :class:`~mailreset.rq.RQMailer`'s Future and RQ keeps the traceback in its failed job
    registry.

    .. versionadded:: 0.1
    """
    job = rq.get_current_job()
    meta = _entry(job)
    recorded = meta.get("error")
    if meta.get("final") and isinstance(recorded, dict) and job is not None:
        # A re-run of a job whose outcome is final (see the module's documentation).
        raise failure_from(job.id, recorded)
    retry = retry_of(meta)
    attempt = int(meta.get("attempt", 0)) + 1
    uncertain = bool(meta.get("uncertain"))
    try:
        # Checked again as every envelope is: a job is data from Redis, not trusted.
        envelope = Envelope(
            sender=sender,
            recipients=recipients,
            data=data,
            message_id=meta.get("message_id") or None,
        )
        delivery = _transport(env_prefix).send(envelope)
    except TemporaryFailure as error:
        enqueued_at = float(meta.get("enqueued_at", time.time()))
        out_of_time = time.time() - enqueued_at >= retry.deadline
        final = job is None or attempt >= retry.attempts or out_of_time
        meta["uncertain"] = uncertain or error.maybe_delivered
        _record(job, meta, failure_record(error, "temporary", attempt), attempt, final=final)
        _log_failure(meta, error, "temporary", attempt, final=final)
        if final:
            raise
        return rq.Retry(max=retry.attempts - 1, interval=retry_interval(retry, attempt))
    except (PermanentFailure, InvalidMessage) as error:
        _record(job, meta, failure_record(error, "permanent", attempt), attempt, final=True)
        _log_failure(meta, error, "permanent", attempt, final=True)
        raise
    except BaseException:
        # RQ's job timeout (raised from a signal handler), or a bug: the connection may be
        # left mid-transaction, so the next job starts from a fresh one, and whether the
        # server took the message is unknown.
        _discard(env_prefix)
        if job is not None:
            meta.update(attempt=attempt, uncertain=True)
            _save_quietly(job)
        raise
    elapsed = (
        # From enqueuing to the server's acceptance: queue wait and earlier attempts included.
        time.time() - float(meta["enqueued_at"]) if "enqueued_at" in meta else delivery.elapsed
    )
    result = delivery_record(delivery, attempt, elapsed, uncertain)
    if job is not None:
        meta.update(attempt=attempt, delivery=result)
        job.save_meta()  # type: ignore[no-untyped-call]
    return result


def _record(
    job: rq.job.Job | None,
    meta: dict[str, Any],
    record: dict[str, Any],
    attempt: int,
    *,
    final: bool,
) -> None:
    if job is None:
        return
    meta.update(attempt=attempt, error=record, final=final)
    job.save_meta()  # type: ignore[no-untyped-call]


def _save_quietly(job: rq.job.Job) -> None:
    try:
        job.save_meta()  # type: ignore[no-untyped-call]
    except Exception:  # Redis away: RQ's own failure handling reports the job anyway
        log.debug("mailreset.rq: saving job.meta failed", exc_info=True)


def _log_failure(
    meta: dict[str, Any], error: Exception, kind: str, attempt: int, *, final: bool
) -> None:
    log.warning(
        "mailreset.rq: attempt %d of %s failed (%s%s): %s",
        attempt,
        meta.get("message_id", "a message"),
        kind,
        "" if final else ", RQ retries it",
        error,
    )


def record_abandoned(
    job: rq.job.Job,
    connection: object,
    kind: type[BaseException] | None,
    value: BaseException | None,
    traceback: TracebackType | None,
) -> None:
    """Worker side, the jobs' RQ failure callback: count the attempt of a worker that died.

    RQ calls it when its registry maintenance finds a job whose worker stopped heartbeating
    (``AbandonedJobError``), before it retries the job. That attempt never reported, so the
    server may hold the message: the next attempt's delivery says ``maybe_duplicated``.
    Every other failure was already recorded by :func:`deliver`.

    .. versionadded:: 0.1
    """
    if not isinstance(value, rq.exceptions.AbandonedJobError):
        return
    meta = _entry(job)
    meta.update(attempt=int(meta.get("attempt", 0)) + 1, uncertain=True)
    _save_quietly(job)
