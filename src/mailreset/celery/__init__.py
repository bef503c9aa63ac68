"""Delivering through Celery: the same :class:`~mailreset.mailers.Mailer` protocol as
:class:`~mailreset.rq.RQMailer`, with Celery workers doing the sending.

The web side (:class:`CeleryMailer`) turns each message into plain data (its sender, its
envelope recipients, Bcc included, its wire bytes, which never carry the Bcc header, its
Message-ID and whether it needs SMTPUTF8) and publishes one task message, always serialised as
JSON whatever the app's ``task_serializer`` says: nothing of the application's objects is
pickled into the broker. No SMTP setting is published either: a worker reads its server, port
and password from its own environment (``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_PASSWORD``, ...)
at its first task and keeps one :class:`~mailreset.transports.SMTPTransport` connection per
worker process (per thread with ``--pool=threads``) open across tasks.

With a broker URL, the mailer makes its own Celery app (:func:`make_app`); the workers then
run that same app, found by ``celery -A mailreset.celery`` as the module's ``app``, built from
the environment (``MAILRESET_CELERY_BROKER``, ``MAILRESET_CELERY_BACKEND``,
``MAILRESET_CELERY_QUEUE``, ``MAILRESET_CELERY_VISIBILITY_TIMEOUT``)::

    MAILRESET_CELERY_BROKER=redis://localhost:6379/0 \\
    MAIL_SERVER=smtp.example.com MAIL_PORT=587 MAIL_USE_TLS=1 MAIL_USERNAME=... \\
    MAIL_PASSWORD=... celery -A mailreset.celery worker --pool=prefork -c 4

With an app of your own, ``CeleryMailer(app)`` registers the task on it (so does
:func:`register_task`, which the module your workers load must call too).

Failures map onto Celery: a temporary one (4xx, connection trouble) is retried with
``Task.retry`` after a random countdown up to :class:`~mailreset.mailers.Retry`'s backoff
ceiling; a permanent one (5xx) fails the task at once. The task is ``acks_late`` and
``reject_on_worker_lost``: a worker killed mid-task leaves its message unacknowledged, and the
broker gives it to another worker (with Redis, once ``visibility_timeout`` ran out). Delivery
is at least once: a worker killed after the server took the message but before the broker
heard of it sends the message again. One gap is kombu's Redis transport's: it takes a message
off the queue and records it as unacknowledged in two steps, so a crash of Redis between the
two loses that message.

The task's outcome (a delivery, or the failure's reason and the server's reply) is stored in
the result backend by the task itself as plain data; the mailer's one watcher thread reads it
from there to settle the Futures. The backend must be a key-value one (Redis, Valkey,
Memcached, ...).

This module needs the ``celery`` extra: ``pip install 'mailreset[celery]'``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
from typing import Any

try:
    import celery
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"mailreset.celery needs Celery: pip install 'mailreset[celery]' ({_error})"
    ) from _error

from mailreset.celery._app import (
    BACKEND_ENV,
    BROKER_ENV,
    QUEUE_ENV,
    TASK_NAME,
    VISIBILITY_TIMEOUT_ENV,
    app_from_env,
    make_app,
    register_task,
)
from mailreset.celery._jobs import PAYLOAD_VERSION, envelope_from_payload, job_payload
from mailreset.celery._producer import CeleryMailer, TaskFuture
from mailreset.celery._worker import configure_worker, deliver

__all__ = [
    "BACKEND_ENV",
    "BROKER_ENV",
    "PAYLOAD_VERSION",
    "QUEUE_ENV",
    "TASK_NAME",
    "VISIBILITY_TIMEOUT_ENV",
    "CeleryMailer",
    "TaskFuture",
    "configure_worker",
    "deliver",
    "envelope_from_payload",
    "job_payload",
    "make_app",
    "register_task",
]

_module_app: celery.Celery | None = None
_module_app_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # `celery -A mailreset.celery worker` looks up the module's `app`: built on first use from
    # the environment, so that importing this module never needs a broker setting.
    global _module_app  # noqa: PLW0603 - one app per process, made lazily
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _module_app_lock:
        if _module_app is None:
            _module_app = app_from_env()
        return _module_app
