"""The Celery apps: the one ``CeleryMailer(url)`` makes, the workers' one, and the task on any."""

from __future__ import annotations

import math
import os
from typing import Any

import celery

from mailreset._convert import seconds
from mailreset.celery._worker import run
from mailreset.errors import ConfigurationError

#: The name the delivery task is registered under on every app.
TASK_NAME = "mailreset.deliver"

#: Where ``celery -A mailreset.celery`` finds the broker and the rest of its app's settings.
BROKER_ENV = "MAILRESET_CELERY_BROKER"
BACKEND_ENV = "MAILRESET_CELERY_BACKEND"
QUEUE_ENV = "MAILRESET_CELERY_QUEUE"
VISIBILITY_TIMEOUT_ENV = "MAILRESET_CELERY_VISIBILITY_TIMEOUT"


def check_queue(value: object) -> None:
    """Raise ConfigurationError unless ``value`` is None or a queue name."""
    if value is None:
        return
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigurationError(f"CeleryMailer.queue must be a queue name, not {value!r}")
    if any(char.isspace() for char in value):
        raise ConfigurationError(f"CeleryMailer.queue has a space: {value!r}")


def make_app(
    broker_url: str,
    *,
    backend_url: str | None = None,
    queue: str = "mail",
    visibility_timeout: float = 60.0,
) -> celery.Celery:
    """A Celery app for mailreset's task alone, as ``CeleryMailer(broker_url)`` makes one.

    JSON only (tasks, results, accepted content), late acknowledgement with a prefetch of one
    message per worker process, results in ``backend_url`` (the broker's URL when None), the
    task routed to ``queue``, and, with Redis, short socket timeouts and the
    ``visibility_timeout`` after which a dead worker's unacknowledged message goes to another
    worker. It must exceed the longest a task can take, retry countdowns included
    (:class:`~mailreset.mailers.Retry`'s ``maximum`` plus a few SMTP timeouts): a message held
    longer than that is given to a second worker as well.

    .. versionadded:: 0.1
    """
    if not isinstance(broker_url, str) or "://" not in broker_url:
        raise ConfigurationError(
            f"CeleryMailer: not a broker URL such as redis://localhost:6379/0: {broker_url!r}"
        )
    check_queue(queue)
    seconds("CeleryMailer: visibility_timeout", visibility_timeout)
    app = celery.Celery("mailreset", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        result_backend=backend_url or broker_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # kombu looks for expired unacknowledged messages every interval x throttle
            # seconds (100 by default): a dead worker's message would wait that long too.
            "unacked_restore_interval": max(1, min(10, math.ceil(visibility_timeout / 5))),
            "unacked_restore_throttle": 1,
            "socket_timeout": 5.0,
            "socket_connect_timeout": 2.0,
        },
        redis_socket_timeout=5.0,
        redis_socket_connect_timeout=2.0,
    )
    register_task(app)
    return app


def app_from_env() -> celery.Celery:
    broker = os.environ.get(BROKER_ENV, "").strip()
    if not broker:
        raise ConfigurationError(
            f"celery -A mailreset.celery needs {BROKER_ENV} (the broker URL, such as "
            "redis://localhost:6379/0) in the worker's environment"
        )
    raw_timeout = os.environ.get(VISIBILITY_TIMEOUT_ENV, "").strip()
    try:
        visibility_timeout = float(raw_timeout) if raw_timeout else 60.0
    except ValueError:
        raise ConfigurationError(
            f"{VISIBILITY_TIMEOUT_ENV} must be a number of seconds, not {raw_timeout!r}"
        ) from None
    return make_app(
        broker,
        backend_url=os.environ.get(BACKEND_ENV, "").strip() or None,
        queue=os.environ.get(QUEUE_ENV, "").strip() or "mail",
        visibility_timeout=visibility_timeout,
    )


def register_task(app: celery.Celery) -> Any:
    """Register mailreset's delivery task on ``app`` (once) and return it.

    The task is :data:`TASK_NAME`, JSON-serialised whatever ``app.conf.task_serializer``
    says, ``acks_late`` and ``reject_on_worker_lost``. ``CeleryMailer(app)`` calls it; the
    module your workers load (``celery -A yourproject worker``) must call it too, so that
    the workers know the task.

    .. versionadded:: 0.1
    """
    if not isinstance(app, celery.Celery):
        raise ConfigurationError(f"register_task needs a celery.Celery app, not {app!r}")
    existing = app.tasks.get(TASK_NAME)
    if existing is not None:
        return existing
    return app.task(
        name=TASK_NAME,
        bind=True,
        serializer="json",
        acks_late=True,
        reject_on_worker_lost=True,
        # The task stores its outcome itself (see _worker.run); Celery's own result would be the
        # same dict again, or an exception without the server's reply.
        ignore_result=True,
        max_retries=None,
    )(run)
