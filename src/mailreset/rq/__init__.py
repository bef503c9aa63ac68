"""Delivering through RQ on Redis: the same :class:`~mailreset.mailers.Mailer` protocol, shared by
every web process and machine, with the sending done by RQ workers.

The web side (:class:`RQMailer`) turns each message into plain data (its sender, its envelope
recipients, Bcc included, and its wire bytes, which never carry the Bcc header) and enqueues a
job that calls :func:`deliver`. Nothing of the application's objects is pickled into Redis, and
no SMTP setting is either: a worker reads its server, port and password from its own
environment (``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_PASSWORD``, ...), once, and keeps one
:class:`~mailreset.transports.SMTPTransport` connection open across jobs.

Run the workers with RQ's ``SimpleWorker`` so that the connection survives from one job to the
next (RQ's default worker forks a child per job, which would reconnect every time)::

    MAIL_SERVER=smtp.example.com MAIL_PORT=587 MAIL_USE_TLS=1 MAIL_USERNAME=... \\
    MAIL_PASSWORD=... rq worker mail --worker-class rq.worker.SimpleWorker \\
        --with-scheduler --url redis://localhost:6379/0

Failures map onto RQ's public retry API: a temporary one (4xx, connection trouble) makes the
job return an ``rq.Retry`` with the backoff of :class:`~mailreset.mailers.Retry`
(``--with-scheduler`` runs the delayed retries); a permanent one (5xx), or the last temporary
one, fails the job and RQ keeps it in its failed job registry with the reason. A job whose
worker died mid-job is retried by RQ's abandoned job handling (its started job registry is
cleaned when the job's heartbeat runs out, about ``job_timeout + 60`` seconds). Delivery is at
least once: a worker killed after the server took the message but before RQ recorded it sends
the message again, and that delivery says ``maybe_duplicated``.

The package holds one concern per module: ``_producer`` (:class:`RQMailer`), ``_watcher``
(the thread that settles the Futures), ``_worker`` (:func:`deliver`,
:func:`configure_worker`) and ``_jobs`` (the job as plain data).

This module needs the ``rq`` extra: ``pip install 'mailreset[rq]'``.

.. versionadded:: 0.1
"""

from __future__ import annotations

try:
    import redis  # noqa: F401 - only to say what is missing
    import rq  # noqa: F401
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"mailreset.rq needs RQ and redis: pip install 'mailreset[rq]' ({_error})"
    ) from _error

from mailreset.rq._jobs import META_KEY  # noqa: F401 - mailreset's key in job.meta
from mailreset.rq._producer import RQMailer
from mailreset.rq._watcher import JobFuture
from mailreset.rq._worker import (
    _factories,  # noqa: F401 - the worker's transport registry, reached by its tests
    _transports,  # noqa: F401
    configure_worker,
    deliver,
)

__all__ = ["JobFuture", "RQMailer", "configure_worker", "deliver"]
