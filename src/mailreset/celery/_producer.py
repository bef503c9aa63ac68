"""The web side: ``CeleryMailer`` publishes tasks and one watcher thread settles their Futures."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import Future
from email.message import Message
from typing import Any

import attrs
import celery
from celery import states
from celery.backends.base import BaseKeyValueStoreBackend

from mailreset._convert import env_prefix_setting, positive_seconds
from mailreset._delivery import delivery_from_record
from mailreset._envelope import Envelope, to_envelope
from mailreset.celery._app import TASK_NAME, check_queue, make_app, register_task
from mailreset.celery._jobs import job_payload
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    MailerClosed,
    MailerUnavailable,
    PermanentFailure,
    TemporaryFailure,
)
from mailreset.mailers import Delivery, Retry
from mailreset.mailers._retry import retry_setting

log = logging.getLogger("mailreset")


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


def _queue(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    check_queue(value)


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
    retry: Retry = attrs.field(validator=retry_setting)
    env_prefix: str = attrs.field(validator=env_prefix_setting)
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
        with self._lock:
            if not self._lock.wait_for(lambda: not self._pending, timeout):
                raise TimeoutError(
                    f"CeleryMailer.flush: {len(self._pending)} task(s) still pending after "
                    f"{timeout}s: are the workers running (`celery -A mailreset.celery "
                    "worker`, or your app's workers with register_task)?"
                )

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
        return delivery_from_record(result)
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
