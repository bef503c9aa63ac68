"""The worker side: the task's body, one transport per worker process, outcomes stored."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import states

from mailreset._delivery import delivery_record
from mailreset.celery._jobs import envelope_from_payload
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessage,
    PermanentFailure,
    TemporaryFailure,
)
from mailreset.mailers import Retry

log = logging.getLogger("mailreset")

_factories: dict[str, Callable[[], Any]] = {}
_factories_lock = threading.Lock()


class _Transports(threading.local):
    """The worker's transports, one per environment prefix, per process and thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.by_prefix: dict[str, Any] = {}


_local = _Transports()


def configure_worker(factory: Callable[[], Any], *, env_prefix: str = "MAIL_") -> None:
    """Worker side: make tasks sent with ``env_prefix`` use ``factory()`` as their transport.

    Without it, a worker builds ``SMTPTransport(SMTPSettings.from_env(env_prefix))``. Call it
    from the module your workers load (``celery -A yourproject worker``), to pass what the
    environment cannot hold, such as an ``ssl_context``. Each worker process (each thread with
    ``--pool=threads``) makes its transport at its first task and keeps it.

    .. versionadded:: 0.1
    """
    with _factories_lock:
        _factories[env_prefix] = factory
    _discard(env_prefix)


def _transport(env_prefix: str) -> Any:
    if _local.pid != os.getpid():
        # A forked pool child inherited its parent's connections: never share a socket.
        _local.pid, _local.by_prefix = os.getpid(), {}
    transport = _local.by_prefix.get(env_prefix)
    if transport is None:
        with _factories_lock:
            factory = _factories.get(env_prefix)
        if factory is None:
            from mailreset.transports import SMTPSettings, SMTPTransport

            transport = SMTPTransport(SMTPSettings.from_env(env_prefix))
        else:
            transport = factory()
        _local.by_prefix[env_prefix] = transport
    return transport


def _discard(env_prefix: str) -> None:
    transport = _local.by_prefix.pop(env_prefix, None)
    if transport is not None and _local.pid == os.getpid():
        try:
            transport.close()
        except Exception:  # a broken connection may fail to say QUIT; it is dropped anyway
            log.debug("mailreset.celery: closing a discarded transport failed", exc_info=True)


def deliver(job: Mapping[str, Any], *, attempt: int = 1) -> dict[str, Any]:
    """Worker side: send one task's message; return the delivery as a dict.

    The transport is kept per worker process (see :func:`configure_worker`). Raises the
    :class:`~mailreset.errors.DeliveryError` of the attempt, or
    :class:`~mailreset.errors.InvalidMessage` for a payload that must not be sent; retrying
    is the task's business.

    .. versionadded:: 0.1
    """
    envelope = envelope_from_payload(job)
    env_prefix = str(job.get("env_prefix") or "MAIL_")
    try:
        delivery = _transport(env_prefix).send(envelope)
    except DeliveryError:
        raise
    except BaseException:
        # A bug, or the worker stopping mid-send (SoftTimeLimitExceeded, SystemExit): the
        # connection may be left mid-transaction, so the next task starts from a fresh one.
        _discard(env_prefix)
        raise
    enqueued_at = job.get("enqueued_at")
    # From sending to the server's acceptance: queue wait and earlier attempts included.
    elapsed = (
        time.time() - float(enqueued_at)
        if isinstance(enqueued_at, (int, float))
        else delivery.elapsed
    )
    return delivery_record(delivery, attempt, elapsed, bool(job.get("maybe_duplicated", False)))


def _retry_policy(job: Mapping[str, Any]) -> Retry:
    try:
        return Retry(**job["retry"])
    except (KeyError, TypeError, ConfigurationError):
        return Retry()


def run(task: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The Celery task's body: deliver ``job``, retry a temporary failure, store the outcome."""
    attempt = int(task.request.retries or 0) + 1
    try:
        result = deliver(job, attempt=attempt)
    except TemporaryFailure as error:
        retry = _retry_policy(job)
        enqueued_at = job.get("enqueued_at")
        out_of_time = (
            isinstance(enqueued_at, (int, float)) and time.time() - enqueued_at >= retry.deadline
        )
        if attempt < retry.attempts and not out_of_time:
            log.warning(
                "mailreset.celery: attempt %d of %s failed (temporary, Celery retries it): %s",
                attempt,
                job.get("message_id") or "a message",
                error,
            )
            if error.maybe_delivered:
                job = {**job, "maybe_duplicated": True}
            raise task.retry(
                exc=error,
                kwargs={"job": job},
                countdown=random.uniform(0.0, retry.ceiling(attempt)),  # noqa: S311 - jitter
                max_retries=retry.attempts - 1,
            ) from error
        _store_failure(task, job, error, "temporary", attempt)
        raise
    except (PermanentFailure, InvalidMessage) as error:
        _store_failure(task, job, error, "permanent", attempt)
        raise
    except DeliveryError as error:
        _store_failure(task, job, error, "temporary", attempt)
        raise
    _store(task, states.SUCCESS, result)
    return result


def _store_failure(
    task: Any, job: Mapping[str, Any], error: Exception, kind: str, attempt: int
) -> None:
    log.warning(
        "mailreset.celery: attempt %d of %s failed (%s, final): %s",
        attempt,
        job.get("message_id") or "a message",
        kind,
        error,
    )
    recipients = getattr(error, "recipients", {}) or {}
    _store(
        task,
        states.FAILURE,
        {
            # Celery's own shape of a failure, so that AsyncResult and Flower read it too.
            "exc_type": type(error).__name__,
            "exc_module": type(error).__module__,
            "exc_message": [str(error)],
            "mailreset": {
                "kind": kind,
                "message": str(error),
                "smtp_code": getattr(error, "smtp_code", None),
                "smtp_error": getattr(error, "smtp_error", None),
                "recipients": {address: list(reply) for address, reply in recipients.items()},
                "maybe_delivered": bool(getattr(error, "maybe_delivered", False)),
                "attempts": attempt,
            },
        },
    )


#: How long a worker keeps trying to store an outcome while the result backend is away.
_STORE_PATIENCE = 30.0


def _store(task: Any, state: str, meta: Mapping[str, Any]) -> None:
    # The message went out (or failed for good): its outcome must reach the backend, or the
    # Future would never settle. A broker restart takes seconds, so keep trying that long,
    # without taking the message (the task is not done) from a worker that is still alive.
    if task.request.called_directly:
        return
    deadline = time.monotonic() + _STORE_PATIENCE
    while True:
        try:
            task.update_state(state=state, meta=dict(meta))
        except Exception as error:
            if time.monotonic() >= deadline:
                raise
            log.warning(
                "mailreset.celery: cannot store the outcome of task %s (%s); trying again",
                task.request.id,
                error,
            )
            time.sleep(0.5)
        else:
            return
