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

import base64
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from email.message import Message
from typing import Any

import attrs

from mailreset._convert import positive_seconds, seconds
from mailreset._envelope import Envelope, to_envelope
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessage,
    MailerClosed,
    MailerUnavailable,
    PermanentFailure,
    TemporaryFailure,
)
from mailreset.mailers import Delivery, Retry

try:
    import celery
    from celery import states
    from celery.backends.base import BaseKeyValueStoreBackend
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"mailreset.celery needs Celery: pip install 'mailreset[celery]' ({_error})"
    ) from _error

__all__ = [
    "CeleryMailer",
    "TaskFuture",
    "configure_worker",
    "deliver",
    "envelope_from_payload",
    "job_payload",
    "make_app",
    "register_task",
]

log = logging.getLogger("mailreset")

#: The name the delivery task is registered under on every app.
TASK_NAME = "mailreset.deliver"

#: The version of the task's plain-data payload (a worker refuses what it does not know).
PAYLOAD_VERSION = 1

#: Where ``celery -A mailreset.celery`` finds the broker and the rest of its app's settings.
BROKER_ENV = "MAILRESET_CELERY_BROKER"
BACKEND_ENV = "MAILRESET_CELERY_BACKEND"
QUEUE_ENV = "MAILRESET_CELERY_QUEUE"
VISIBILITY_TIMEOUT_ENV = "MAILRESET_CELERY_VISIBILITY_TIMEOUT"


class TaskFuture(Future[Delivery]):
    """The handle :meth:`CeleryMailer.send` returns: a Future bound to one Celery task.

    When ``send`` returns, the broker has stored the task message. The Future then ends when a
    worker finished the task: in a :class:`~mailreset.mailers.Delivery`, or in the
    :class:`~mailreset.errors.DeliveryError` that ended it (after its retries). No worker
    running means it stays pending: ``result(timeout)`` raises ``TimeoutError`` then, and the
    message still waits in the broker.

    It is already running when returned, so ``cancel()`` returns False: revoking a Celery task
    is Celery's business (``app.control.revoke(future.task_id)``).

    Attributes:
        task_id: the Celery task's id (``app.AsyncResult(future.task_id)``).

    .. versionadded:: 0.1
    """

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.set_running_or_notify_cancel()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TaskFuture task_id={self.task_id!r} {state}>"


def _prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        raise ConfigurationError(
            f"CeleryMailer.env_prefix must be an environment variable prefix such as 'MAIL_', "
            f"not {value!r}"
        )


def _retry(instance: object, attribute: attrs.Attribute[Retry], value: Retry) -> None:
    if not isinstance(value, Retry):
        raise ConfigurationError(
            f"CeleryMailer.retry must be a mailreset.Retry, not {type(value).__name__}"
        )


def _queue(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigurationError(f"CeleryMailer.queue must be a queue name, not {value!r}")
    if any(char.isspace() for char in value):
        raise ConfigurationError(f"CeleryMailer.queue has a space: {value!r}")


# -- the apps ---------------------------------------------------------------------------------


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
    _queue(None, attrs.fields(CeleryMailer).queue, queue)
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


def _app_from_env() -> celery.Celery:
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
            _module_app = _app_from_env()
        return _module_app


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
        # The task stores its outcome itself (see _run); Celery's own result would be the
        # same dict again, or an exception without the server's reply.
        ignore_result=True,
        max_retries=None,
    )(_run)


# -- the web side -----------------------------------------------------------------------------


@attrs.define(init=False)
class CeleryMailer:
    """A :class:`~mailreset.mailers.Mailer` that publishes each message as a Celery task.

    ``CeleryMailer("redis://localhost:6379/0")`` makes its own app (:func:`make_app`; the
    workers run ``celery -A mailreset.celery worker`` with ``MAILRESET_CELERY_BROKER`` set to
    the same URL); ``CeleryMailer(app)`` registers the task on your app. Making one contacts
    neither the broker nor the backend.

    ``send`` serialises the message, publishes it and returns a :class:`TaskFuture` once the
    broker took it; when the broker does not answer within ``publish_timeout`` seconds it
    raises :class:`~mailreset.errors.MailerUnavailable` and nothing was published. One
    watcher thread per mailer (started by the first ``send``) reads the pending tasks'
    outcomes from the result backend in one round trip every ``poll_interval`` seconds, and
    sleeps while no Future is pending.

    Args:
        app_or_broker_url: a ``celery.Celery`` app with a key-value result backend, or a
            broker URL.
        backend_url: the result backend with a broker URL (default: the broker's URL).
        queue: the queue the tasks go to (None: the app's routing decides; ``make_app``
            routes to ``"mail"``).
        env_prefix: the prefix of the environment variables the worker reads its SMTP
            settings from (``MAIL_`` reads ``MAIL_SERVER``, ...); it travels with each task.
        retry: how temporary failures are retried: at most ``attempts`` attempts, each
            retry after a random countdown up to the backoff ceiling, none after
            ``deadline`` seconds from ``send``.
        poll_interval: seconds between two looks at the pending tasks' outcomes.
        publish_timeout: seconds a ``send`` may wait for the broker (connect and reply).

    .. versionadded:: 0.1
    """

    app: celery.Celery
    queue: str | None = attrs.field(validator=_queue)
    retry: Retry = attrs.field(validator=_retry)
    env_prefix: str = attrs.field(validator=_prefix)
    poll_interval: float = attrs.field(validator=positive_seconds)
    publish_timeout: float = attrs.field(validator=positive_seconds)
    _pending: dict[str, TaskFuture] = attrs.field(init=False, repr=False)
    _lock: threading.Condition = attrs.field(init=False, repr=False)
    _idle_lock: threading.Lock = attrs.field(init=False, repr=False)
    _idle: list[Any] = attrs.field(init=False, repr=False)
    _pid: int = attrs.field(init=False, repr=False)
    _watcher: threading.Thread | None = attrs.field(init=False, repr=False)
    _stopping: bool = attrs.field(init=False, repr=False)
    _closed: threading.Event = attrs.field(init=False, repr=False)

    def __init__(
        self,
        app_or_broker_url: celery.Celery | str,
        *,
        backend_url: str | None = None,
        queue: str | None = None,
        env_prefix: str = "MAIL_",
        retry: Retry = Retry(),  # noqa: B008 - frozen value object
        poll_interval: float = 0.05,
        publish_timeout: float = 2.0,
    ) -> None:
        if isinstance(app_or_broker_url, str):
            app = make_app(app_or_broker_url, backend_url=backend_url)
        elif isinstance(app_or_broker_url, celery.Celery):
            app = app_or_broker_url
            _check_app(app)
            register_task(app)
        else:
            raise ConfigurationError(
                "CeleryMailer needs a celery.Celery app or a broker URL, "
                f"not {type(app_or_broker_url).__name__}"
            )
        self.__attrs_init__(
            app=app,
            queue=queue,
            retry=retry,
            env_prefix=env_prefix,
            poll_interval=poll_interval,
            publish_timeout=publish_timeout,
        )

    def __attrs_post_init__(self) -> None:
        self._start_afresh()
        self._closed = threading.Event()

    def _start_afresh(self) -> None:
        # Also what a forked child does first: its parent's watcher thread did not come
        # along, and its parent's sockets and pending Futures are not its own to use.
        self._pending = {}
        self._lock = threading.Condition()
        self._idle_lock = threading.Lock()
        self._idle = []
        self._watcher = None
        self._stopping = False
        self._pid = os.getpid()

    def send(self, message: Message | Envelope) -> TaskFuture:
        """Publish ``message``; return its :class:`TaskFuture` once the broker stored it.

        Raises :class:`~mailreset.errors.InvalidMessage` for a message that must not be sent,
        :class:`~mailreset.errors.MailerUnavailable` when the broker did not take it (nothing
        was published), :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        if self._closed.is_set():
            raise MailerClosed("CeleryMailer.send after close(): make a new CeleryMailer")
        outgoing = to_envelope(message)
        payload = job_payload(outgoing, env_prefix=self.env_prefix, retry=self.retry)
        task_id = str(uuid.uuid4())
        options: dict[str, Any] = {}
        if self.queue is not None:
            options["queue"] = self.queue
        if self._pid != os.getpid():
            self._start_afresh()
        # One connection per concurrent sender, kept for the next send: a kombu connection
        # is not thread-safe, and a lock around one would queue every request behind the
        # slowest publish.
        with self._idle_lock:
            connection = self._idle.pop() if self._idle else None
        try:
            if connection is None:
                connection = self._connect()
            self.app.send_task(
                TASK_NAME,
                kwargs={"job": payload},
                task_id=task_id,
                connection=connection,
                serializer="json",
                ignore_result=True,
                retry=False,
                add_to_parent=False,
                # Celery's default is the call's repr: the whole message, again.
                argsrepr="()",
                kwargsrepr=f"{{job: {outgoing.message_id or '(no Message-ID)'}}}",
                **options,
            )
        except Exception as error:
            # Whatever the transport raised (kombu's OperationalError, a socket timeout, a
            # redis error): the broker did not confirm, so the caller keeps the message.
            if connection is not None:
                connection.collect()  # frees its sockets without talking to the broker
            raise MailerUnavailable(
                f"the broker ({self._where()}) did not take the message "
                f"{outgoing.message_id or ''}: {error}. Nothing was published; send it "
                "again once the broker is back."
            ) from error
        with self._idle_lock:
            if self._closed.is_set():
                connection.collect()
            else:
                self._idle.append(connection)
        future = TaskFuture(task_id)
        with self._lock:
            self._pending[task_id] = future
            self._start_watching()
            self._lock.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every Future this mailer returned is settled (workers must be running).

        Raises :class:`TimeoutError` naming how many tasks are still pending after ``timeout``
        seconds (None: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"CeleryMailer.flush: {len(self._pending)} task(s) still pending after "
                        f"{timeout}s: are the workers running (`celery -A mailreset.celery "
                        "worker`, or your app's workers with register_task)?"
                    )
                self._lock.wait(left)

    def close(self, timeout: float | None = 0.0) -> None:
        """Stop accepting messages and stop watching the tasks.

        Every accepted message is already in the broker and the workers deliver it whether or
        not this mailer still runs. ``close`` waits up to ``timeout`` seconds (None: without
        limit) for the pending Futures; those still pending then end in
        :class:`~mailreset.errors.MailerClosed` (the task itself stays queued).
        """
        self._closed.set()
        try:
            if timeout is None or timeout > 0:
                self.flush(timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._stopping = True
                self._lock.notify_all()
            watcher = self._watcher
            if watcher is not None and watcher is not threading.current_thread():
                watcher.join()
            with self._lock:
                left, self._pending = self._pending, {}
                self._lock.notify_all()
            with self._idle_lock:
                idle, self._idle = self._idle, []
            for connection in idle:
                connection.collect()
            for task_id, future in left.items():
                future.set_exception(
                    MailerClosed(
                        f"CeleryMailer closed before task {task_id} reported; the task stays "
                        "queued and a worker will still deliver it"
                    )
                )

    def __enter__(self) -> CeleryMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> Any:
        # A connection of the mailer's own with short socket timeouts: `send` runs on a
        # request's path, and a broker that is away or frozen must become MailerUnavailable
        # in seconds, whatever timeouts the app's own connections use.
        timeout = float(self.publish_timeout)
        return self.app.connection_for_write(
            connect_timeout=timeout,
            transport_options={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "max_retries": 0,
            },
        )

    def _where(self) -> str:
        return _redact_url(str(self.app.conf.broker_url or "the app's default broker"))

    # -- watching ---------------------------------------------------------------------------

    def _start_watching(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="mailreset-celery-watch", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        # Daemon thread: nothing is lost when the process exits without close(), since the
        # tasks are in the broker; only the Futures stop settling.
        backend = self.app.backend
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()  # idle means asleep: woken by send() or close()
                if self._stopping:
                    return
                task_ids = list(self._pending)
            try:
                settled = _poll(backend, task_ids)
            except Exception as error:  # a backend that hiccups must not end the watcher
                log.warning("CeleryMailer: cannot read task results (%s); retrying", error)
                with self._lock:  # once a second: a backend that is away is not polled hard
                    if not self._stopping:
                        self._lock.wait(max(1.0, self.poll_interval))
                continue
            with self._lock:
                futures = [
                    (self._pending.pop(task_id, None), outcome) for task_id, outcome in settled
                ]
                self._lock.notify_all()
            for future, outcome in futures:
                if future is None:
                    continue
                if isinstance(outcome, Delivery):
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)
            with self._lock:
                if self._pending and not self._stopping:
                    self._lock.wait(self.poll_interval)


def _check_app(app: celery.Celery) -> None:
    accepted = {str(kind).lower() for kind in app.conf.accept_content or ()}
    if not accepted & {"json", "application/json"}:
        raise ConfigurationError(
            "CeleryMailer: the app's accept_content must include 'json' (mailreset's tasks "
            f"are always JSON), it is {sorted(accepted)}"
        )
    if not app.conf.result_backend:
        raise ConfigurationError(
            "CeleryMailer: the app has no result_backend; set one (such as the Redis "
            "broker's URL), where the workers store each delivery for the mailer's Futures"
        )
    if not isinstance(app.backend, BaseKeyValueStoreBackend):
        raise ConfigurationError(
            "CeleryMailer: the app's result_backend must be a key-value one (Redis, Valkey, "
            f"Memcached...), not {type(app.backend).__name__}"
        )


def _redact_url(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def _poll(backend: Any, task_ids: list[str]) -> list[tuple[str, Delivery | DeliveryError]]:
    raw = backend.mget([backend.get_key_for_task(task_id) for task_id in task_ids])
    settled: list[tuple[str, Delivery | DeliveryError]] = []
    for task_id, value in zip(task_ids, raw, strict=True):
        if value is None:
            continue  # not finished yet (Celery stores nothing before then)
        meta = backend.decode(value)
        status = meta.get("status") if isinstance(meta, dict) else None
        if isinstance(status, str) and status in states.READY_STATES:
            settled.append((task_id, _outcome(task_id, status, meta.get("result"))))
    return settled


def _outcome(task_id: str, status: str, result: Any) -> Delivery | DeliveryError:
    ours = result.get("mailreset") if isinstance(result, dict) else None
    if status == states.SUCCESS and isinstance(result, dict) and "message_id" in result:
        return _delivery_from_dict(result)
    if status == states.FAILURE and isinstance(ours, dict):
        kind = PermanentFailure if ours.get("kind") == "permanent" else TemporaryFailure
        return kind(
            f"task {task_id}: {ours.get('message', 'delivery failed')}",
            smtp_code=ours.get("smtp_code"),
            smtp_error=ours.get("smtp_error"),
            recipients={
                address: (int(code), str(text))
                for address, (code, text) in (ours.get("recipients") or {}).items()
            },
            maybe_delivered=bool(ours.get("maybe_delivered", False)),
        )
    return DeliveryError(
        f"task {task_id} ended {status} without a delivery (revoked, or failed outside "
        "mailreset's task): see the worker's log"
    )


def _delivery_from_dict(result: Mapping[str, Any]) -> Delivery:
    return Delivery(
        message_id=str(result["message_id"]),
        envelope_from=str(result["envelope_from"]),
        accepted=tuple(result.get("accepted") or ()),
        refused={
            address: (int(code), str(text))
            for address, (code, text) in (result.get("refused") or {}).items()
        },
        attempts=int(result.get("attempts", 1)),
        elapsed=float(result.get("elapsed", 0.0)),
        maybe_duplicated=bool(result.get("maybe_duplicated", False)),
    )


# -- the message as plain data ----------------------------------------------------------------


def job_payload(envelope: Envelope, *, env_prefix: str, retry: Retry) -> dict[str, Any]:
    """The task's one argument: ``envelope`` and its delivery policy as JSON-ready plain data.

    The bytes travel as text when they are ASCII (most mail: readable in the broker, and no
    bigger), as base64 otherwise. No SMTP setting is in it, only ``env_prefix``, the name of
    the worker's own settings.

    .. versionadded:: 0.1
    """
    if envelope.data.isascii():
        data, encoding = envelope.data.decode("ascii"), "ascii"
    else:
        data, encoding = base64.b64encode(envelope.data).decode("ascii"), "base64"
    return {
        "version": PAYLOAD_VERSION,
        "sender": envelope.sender,
        "recipients": list(envelope.recipients),
        "data": data,
        "encoding": encoding,
        "message_id": envelope.message_id,
        "smtputf8": envelope.smtputf8,
        "env_prefix": env_prefix,
        "retry": {
            "attempts": retry.attempts,
            "initial": retry.initial,
            "maximum": retry.maximum,
            "deadline": retry.deadline,
        },
        "enqueued_at": time.time(),
    }


def envelope_from_payload(job: Mapping[str, Any]) -> Envelope:
    """The :class:`~mailreset.transports.Envelope` in a task's payload, checked again.

    Raises :class:`~mailreset.errors.InvalidMessage` for a payload that is not one (a task is
    data from the broker, not trusted).

    .. versionadded:: 0.1
    """
    if not isinstance(job, Mapping) or job.get("version") != PAYLOAD_VERSION:
        raise InvalidMessage(
            f"not a mailreset task payload of version {PAYLOAD_VERSION}: the worker and the "
            "web side run different mailreset versions, or the task was made by hand"
        )
    try:
        encoding, text = job["encoding"], job["data"]
        if encoding == "ascii":
            data = text.encode("ascii")
        elif encoding == "base64":
            data = base64.b64decode(text, validate=True)
        else:
            raise InvalidMessage(f"unknown payload encoding {encoding!r}")
        return Envelope(
            sender=job["sender"],
            recipients=job["recipients"],
            data=data,
            message_id=job.get("message_id") or None,
            smtputf8=bool(job.get("smtputf8", False)),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise InvalidMessage(f"a malformed mailreset task payload: {error!r}") from error


# -- the worker side --------------------------------------------------------------------------

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
    return {
        "message_id": delivery.message_id,
        "envelope_from": delivery.envelope_from,
        "accepted": list(delivery.accepted),
        "refused": {address: list(reply) for address, reply in delivery.refused.items()},
        "attempts": attempt,
        # From sending to the server's acceptance: queue wait and earlier attempts included.
        "elapsed": time.time() - float(enqueued_at)
        if isinstance(enqueued_at, (int, float))
        else delivery.elapsed,
        "maybe_duplicated": bool(job.get("maybe_duplicated", False)),
    }


def _retry_policy(job: Mapping[str, Any]) -> Retry:
    try:
        return Retry(**job["retry"])
    except (KeyError, TypeError, ConfigurationError):
        return Retry()


def _run(task: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The Celery task: deliver ``job``, retry a temporary failure, store the outcome."""
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
