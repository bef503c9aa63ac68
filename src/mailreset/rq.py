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

Failures map onto RQ: a temporary one (4xx, connection trouble) is retried by RQ with the
backoff of :class:`~mailreset.mailers.Retry` (``--with-scheduler`` runs the delayed retries);
a permanent one (5xx) fails the job at once and RQ keeps it in its failed job registry with the
reason. A job whose worker died mid-job is retried by RQ's abandoned job handling (its started
job registry is cleaned when the job's heartbeat runs out, about ``job_timeout + 60`` seconds).
Delivery is at least once: a worker killed after the server took the message but before RQ
recorded it sends the message again.

This module needs the ``rq`` extra: ``pip install 'mailreset[rq]'``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from email.message import Message
from typing import Any

import attrs

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
    import redis
    import rq
    import rq.job
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"mailreset.rq needs RQ and redis: pip install 'mailreset[rq]' ({_error})"
    ) from _error

__all__ = ["JobFuture", "RQMailer", "configure_worker", "deliver"]

log = logging.getLogger("mailreset")

#: The key of mailreset's own entry in ``job.meta`` (plain data only).
META_KEY = "mailreset"

# Statuses after which a job never changes again (RQ's JobStatus values).
_FINISHED = "finished"
_FAILED = "failed"
_GONE = frozenset({"stopped", "canceled"})


class JobFuture(Future[Delivery]):
    """The handle :meth:`RQMailer.send` returns: a Future bound to one RQ job.

    When ``send`` returns, Redis has stored the job (the message is safe there, and with
    ``appendfsync always`` on disk too). The Future then ends when a worker finished the job:
    in a :class:`~mailreset.mailers.Delivery`, or in the
    :class:`~mailreset.errors.DeliveryError` that made RQ give up (after its retries). No
    worker running means it stays pending: ``result(timeout)`` raises ``TimeoutError`` then,
    and the message still waits in Redis.

    It is already running when returned, so ``cancel()`` returns False: cancelling an RQ job
    is RQ's business (``rq.job.Job.fetch(job_id, connection).cancel()``).

    Attributes:
        job_id: the RQ job's id (``rq.job.Job.fetch(future.job_id, connection=...)``).

    .. versionadded:: 0.1
    """

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.set_running_or_notify_cancel()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<JobFuture job_id={self.job_id!r} {state}>"


def _positive_seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"RQMailer.{attribute.name} must be a positive number of seconds, not {value!r}"
        )


def _whole_seconds(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"RQMailer.{attribute.name} must be a whole number of seconds >= 1, not {value!r}"
        )


def _prefix(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.replace("_", "").isalnum():
        raise ConfigurationError(
            f"RQMailer.env_prefix must be an environment variable prefix such as 'MAIL_', "
            f"not {value!r}"
        )


def _retry(instance: object, attribute: attrs.Attribute[Retry], value: Retry) -> None:
    if not isinstance(value, Retry):
        raise ConfigurationError(
            f"RQMailer.retry must be a mailreset.Retry, not {type(value).__name__}"
        )


def _connect(url: str) -> redis.Redis:
    try:
        # A short retry only bridges a blip: `send` runs on a request's path, and a Redis that
        # stays away must become MailerUnavailable in well under a second, not after redis-py's
        # default of ten retries.
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry as RedisRetry

        return redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=RedisRetry(ExponentialBackoff(cap=0.1, base=0.01), 3),
        )
    except ValueError as error:
        raise ConfigurationError(f"RQMailer: not a Redis URL: {url!r} ({error})") from error


@attrs.define(init=False)
class RQMailer:
    """A :class:`~mailreset.mailers.Mailer` that enqueues each message as an RQ job.

    ``RQMailer("redis://localhost:6379/0")``, ``RQMailer(redis.Redis(...))`` or
    ``RQMailer(rq.Queue("mail", connection=...))``. The workers run ``rq worker mail`` (see
    the module's documentation) with the SMTP settings in their environment.

    ``send`` serialises the message, enqueues it and returns a :class:`JobFuture` once Redis
    stored the job; when Redis does not answer it raises
    :class:`~mailreset.errors.MailerUnavailable` and nothing was enqueued: the caller still
    holds the message. One background thread per mailer (started by the first ``send``) asks
    Redis, every ``poll_interval`` seconds and in one round trip, how the pending jobs went, to
    settle their Futures.

    Args:
        queue: an ``rq.Queue``, a ``redis.Redis`` connection, or a ``redis://`` URL.
        queue_name: the RQ queue (ignored when a Queue is given).
        env_prefix: the prefix of the environment variables the worker reads its SMTP
            settings from (``MAIL_`` reads ``MAIL_SERVER``, ...); it travels with each job.
        retry: how temporary failures are retried. Its ceilings become RQ's retry intervals
            (whole seconds, rounded up; RQ adds no jitter), ``attempts - 1`` RQ's ``max``,
            and a temporary failure after ``deadline`` seconds from enqueuing is final.
        job_timeout: seconds a worker may spend on one job before RQ kills it.
        result_ttl: seconds RQ keeps a delivered job (and its message) after success.
        failure_ttl: seconds RQ keeps a failed job (and its message) in the failed registry.
        poll_interval: seconds between two looks at the pending jobs' statuses.

    .. versionadded:: 0.1
    """

    queue: rq.Queue
    retry: Retry = attrs.field(validator=_retry)
    env_prefix: str = attrs.field(validator=_prefix)
    job_timeout: int = attrs.field(validator=_whole_seconds)
    result_ttl: int = attrs.field(validator=_whole_seconds)
    failure_ttl: int = attrs.field(validator=_whole_seconds)
    poll_interval: float = attrs.field(validator=_positive_seconds)
    _pending: dict[str, JobFuture] = attrs.field(init=False, repr=False)
    _lock: threading.Condition = attrs.field(init=False, repr=False)
    _stop: threading.Event = attrs.field(init=False, repr=False)
    _watcher: threading.Thread | None = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(init=False, repr=False)

    def __init__(
        self,
        queue: rq.Queue | redis.Redis | str,
        *,
        queue_name: str = "mail",
        env_prefix: str = "MAIL_",
        retry: Retry = Retry(),  # noqa: B008 - frozen value object
        job_timeout: int = 60,
        result_ttl: int = 300,
        failure_ttl: int = 7 * 24 * 3600,
        poll_interval: float = 0.05,
    ) -> None:
        if isinstance(queue, str):
            queue = _connect(queue)
        if isinstance(queue, redis.Redis):
            if not isinstance(queue_name, str) or not queue_name or not queue_name.isprintable():
                raise ConfigurationError(
                    f"RQMailer.queue_name must be a queue name, not {queue_name!r}"
                )
            if any(char.isspace() for char in queue_name):
                raise ConfigurationError(f"RQMailer.queue_name has a space: {queue_name!r}")
            queue = rq.Queue(queue_name, connection=queue)
        if not isinstance(queue, rq.Queue):
            raise ConfigurationError(
                "RQMailer needs an rq.Queue, a redis.Redis or a redis:// URL, "
                f"not {type(queue).__name__}"
            )
        self.__attrs_init__(
            queue=queue,
            retry=retry,
            env_prefix=env_prefix,
            job_timeout=job_timeout,
            result_ttl=result_ttl,
            failure_ttl=failure_ttl,
            poll_interval=poll_interval,
        )

    def __attrs_post_init__(self) -> None:
        self._pending = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._watcher = None
        self._closed = False

    def send(self, message: Message | Envelope) -> JobFuture:
        """Enqueue ``message``; return its :class:`JobFuture` once Redis stored the job.

        Raises :class:`~mailreset.errors.InvalidMessage` for a message that must not be sent,
        :class:`~mailreset.errors.MailerUnavailable` when Redis did not take it (nothing was
        enqueued), :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        if self._closed:
            raise MailerClosed("RQMailer.send after close(): make a new RQMailer")
        outgoing = to_envelope(message)
        message_id = outgoing.message_id or ""
        retries = self.retry.attempts - 1
        options: dict[str, Any] = {}
        if retries:
            options["retry"] = rq.Retry(
                max=retries,
                interval=[math.ceil(self.retry.ceiling(n)) for n in range(1, retries + 1)],
            )
        meta = {
            META_KEY: {
                "retries": retries,
                "deadline": float(self.retry.deadline),
                "enqueued_at": time.time(),
                "message_id": message_id,
            }
        }
        try:
            job = self.queue.enqueue(
                deliver,
                outgoing.sender,
                list(outgoing.recipients),
                outgoing.data,
                self.env_prefix,
                job_timeout=self.job_timeout,
                result_ttl=self.result_ttl,
                failure_ttl=self.failure_ttl,
                # RQ's default description is the call's repr: the whole message, again.
                description=f"mailreset.rq.deliver {message_id or '(no Message-ID)'}",
                meta=meta,
                **options,
            )
        except (redis.exceptions.RedisError, OSError) as error:
            raise MailerUnavailable(
                f"Redis ({self._where()}) did not take the message {message_id}: {error}. "
                "Nothing was enqueued; send it again once Redis is back."
            ) from error
        future = JobFuture(job.id)
        with self._lock:
            self._pending[job.id] = future
            self._start_watching()
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every Future this mailer returned is settled (workers must be running).

        Raises :class:`TimeoutError` naming how many jobs are still pending after ``timeout``
        seconds (None: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"RQMailer.flush: {len(self._pending)} job(s) still pending after "
                        f"{timeout}s on queue {self.queue.name!r}: are the workers running "
                        "(`rq worker mail --worker-class rq.worker.SimpleWorker`)?"
                    )
                self._lock.wait(left)

    def close(self, timeout: float | None = 0.0) -> None:
        """Stop accepting messages and stop watching the jobs.

        Every accepted message is already in Redis and the workers deliver it whether or not
        this mailer still runs. ``close`` waits up to ``timeout`` seconds (None: without limit)
        for the pending Futures; those still pending then end in
        :class:`~mailreset.errors.MailerClosed` (the job itself stays queued).
        """
        self._closed = True
        try:
            if timeout is None or timeout > 0:
                self.flush(timeout)
        except TimeoutError:
            pass
        finally:
            self._stop.set()
            watcher = self._watcher
            if watcher is not None and watcher is not threading.current_thread():
                watcher.join()
            with self._lock:
                left, self._pending = self._pending, {}
                self._lock.notify_all()
            for job_id, future in left.items():
                future.set_exception(
                    MailerClosed(
                        f"RQMailer closed before job {job_id} reported; the job stays queued "
                        "in Redis and a worker will still deliver it"
                    )
                )

    def __enter__(self) -> RQMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _where(self) -> str:
        kwargs = self.queue.connection.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

    # -- watching ---------------------------------------------------------------------------

    def _start_watching(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name=f"mailreset-rq-watch-{self.queue.name}", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        # Daemon thread: nothing is lost when the process exits without close(), since the jobs
        # are in Redis; only the Futures stop settling.
        while not self._stop.wait(self.poll_interval):
            with self._lock:
                job_ids = list(self._pending)
            if not job_ids:
                continue
            try:
                settled = self._poll(job_ids)
            except (redis.exceptions.RedisError, OSError) as error:
                log.warning("RQMailer: cannot read job statuses from Redis (%s); retrying", error)
                continue
            if not settled:
                continue
            with self._lock:
                futures = [
                    (self._pending.pop(job_id, None), outcome) for job_id, outcome in settled
                ]
                self._lock.notify_all()
            for future, outcome in futures:
                if future is None:
                    continue
                if isinstance(outcome, Delivery):
                    future.set_result(outcome)
                else:
                    future.set_exception(outcome)

    def _poll(self, job_ids: list[str]) -> list[tuple[str, Delivery | DeliveryError]]:
        with self.queue.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.hmget(rq.job.Job.key_for(job_id), "status", "meta")
            replies = pipeline.execute()
        settled: list[tuple[str, Delivery | DeliveryError]] = []
        for job_id, (raw_status, raw_meta) in zip(job_ids, replies, strict=True):
            status = raw_status.decode() if raw_status is not None else None
            if status not in {_FINISHED, _FAILED, None, *_GONE}:
                continue
            meta = self._meta(raw_meta)
            settled.append((job_id, _outcome(job_id, status, meta)))
        return settled

    def _meta(self, raw: bytes | None) -> Mapping[str, Any]:
        if not raw:
            return {}
        try:
            loaded = self.queue.serializer.loads(raw)
        except Exception:  # a foreign job's unreadable meta must not stop the watcher
            return {}
        ours = loaded.get(META_KEY) if isinstance(loaded, dict) else None
        return ours if isinstance(ours, dict) else {}


def _outcome(job_id: str, status: str | None, meta: Mapping[str, Any]) -> Delivery | DeliveryError:
    if status == _FINISHED and isinstance(meta.get("delivery"), dict):
        return Delivery(**meta["delivery"])
    error = meta.get("error")
    if status == _FAILED and isinstance(error, dict):
        kind = PermanentFailure if error.get("kind") == "permanent" else TemporaryFailure
        return kind(
            f"job {job_id}: {error.get('message', 'delivery failed')}",
            smtp_code=error.get("smtp_code"),
            smtp_error=error.get("smtp_error"),
            recipients={
                address: (int(code), str(text))
                for address, (code, text) in (error.get("recipients") or {}).items()
            },
        )
    if status is None:
        return DeliveryError(
            f"job {job_id} vanished from Redis before a worker reported on it "
            "(deleted, expired, or Redis lost it)"
        )
    return DeliveryError(
        f"job {job_id} ended {status} without a delivery (worker died with no retries left, "
        "job timeout, or stopped by hand): see RQ's failed job registry"
    )


# -- the message as plain data ----------------------------------------------------------------


# -- the worker side --------------------------------------------------------------------------

#: One transport per environment prefix, per worker process, opened lazily, kept across jobs.
_transports: dict[str, Any] = {}
_factories: dict[str, Callable[[], Any]] = {}
_transports_lock = threading.Lock()


def configure_worker(factory: Callable[[], Any], *, env_prefix: str = "MAIL_") -> None:
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


def _default_factory(env_prefix: str) -> Callable[[], Any]:
    def make() -> Any:
        from mailreset.transports import SMTPSettings, SMTPTransport

        return SMTPTransport(SMTPSettings.from_env(env_prefix))

    return make


def _transport(env_prefix: str) -> Any:
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


def deliver(
    sender: str, recipients: list[str], data: bytes, env_prefix: str = "MAIL_"
) -> dict[str, Any]:
    """Worker side, RQ's job function: send one enqueued message; return the delivery as a dict.

    The transport is kept per worker process (see :func:`configure_worker`). A
    :class:`~mailreset.errors.TemporaryFailure` is raised for RQ to retry while retries and
    the deadline last; a :class:`~mailreset.errors.PermanentFailure` (or an
    :class:`~mailreset.errors.InvalidMessage`) fails the job at once, with no retry. Either
    way the reason is kept in ``job.meta`` for :class:`RQMailer`'s Future and RQ keeps the
    traceback in its failed job registry.

    .. versionadded:: 0.1
    """
    job = rq.get_current_job()
    meta: dict[str, Any] = {}
    if job is not None:
        entry = job.meta.setdefault(META_KEY, {})
        meta = entry if isinstance(entry, dict) else {}
    retries = int(meta.get("retries", 0))
    retries_left = int(job.retries_left or 0) if job is not None else 0
    attempt = retries - retries_left + 1
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
        out_of_time = time.time() - float(meta.get("enqueued_at", time.time())) >= float(
            meta.get("deadline", math.inf)
        )
        final = retries_left == 0 or out_of_time
        _record_failure(job, meta, error, "temporary", attempt, final=final)
        raise
    except (PermanentFailure, InvalidMessage) as error:
        _record_failure(job, meta, error, "permanent", attempt, final=True)
        raise
    except BaseException:
        # RQ's job timeout (raised from a signal handler), or a bug: the connection may be
        # left mid-transaction, so the next job starts from a fresh one.
        _discard(env_prefix)
        raise
    result = {
        "message_id": delivery.message_id,
        "envelope_from": delivery.envelope_from,
        "accepted": list(delivery.accepted),
        "refused": {address: list(reply) for address, reply in delivery.refused.items()},
        "attempts": attempt,
        # From enqueuing to the server's acceptance: queue wait and earlier attempts included.
        "elapsed": time.time() - float(meta["enqueued_at"])
        if "enqueued_at" in meta
        else delivery.elapsed,
    }
    if job is not None:
        meta["delivery"] = result
        job.save_meta()  # type: ignore[no-untyped-call]
    return result


def _record_failure(
    job: rq.job.Job | None,
    meta: dict[str, Any],
    error: Exception,
    kind: str,
    attempt: int,
    *,
    final: bool,
) -> None:
    log.warning(
        "mailreset.rq: attempt %d of %s failed (%s%s): %s",
        attempt,
        meta.get("message_id", "a message"),
        kind,
        "" if final else ", RQ retries it",
        error,
    )
    if job is None:
        return
    recipients = getattr(error, "recipients", {}) or {}
    meta["error"] = {
        "kind": kind,
        "message": str(error),
        "smtp_code": getattr(error, "smtp_code", None),
        "smtp_error": getattr(error, "smtp_error", None),
        "recipients": {address: list(reply) for address, reply in recipients.items()},
        "attempts": attempt,
    }
    job.save_meta()  # type: ignore[no-untyped-call]
    if final:
        # RQ retries any exception while retries are left (that is how a dead worker's job is
        # retried too); a permanent failure, or the deadline, must end the job here. The
        # worker reads retries_left from this very Job object when it handles the failure.
        job.retries_left = 0
