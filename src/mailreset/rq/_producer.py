"""The web side: :class:`RQMailer` serialises a message, enqueues its job, returns a Future."""

from __future__ import annotations

import logging
from email.message import Message
from typing import Any

import attrs
import redis
import rq
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry

from mailreset._convert import env_prefix_setting, positive_seconds, whole_number
from mailreset._envelope import Envelope, to_envelope
from mailreset.errors import ConfigurationError, MailerClosed, MailerUnavailable
from mailreset.mailers import Retry
from mailreset.mailers._retry import retry_setting
from mailreset.rq._jobs import FAILURE_CALLBACK, JOB_FUNCTION, new_meta
from mailreset.rq._watcher import JobFuture, Watcher

__all__ = ["RQMailer"]

log = logging.getLogger("mailreset")

#: Seconds redis-py waits for a TCP connection, then for each reply, on the connection RQMailer
#: makes from a URL. A frozen Redis (accepting connections, never answering) costs `send` at
#: most about SOCKET_TIMEOUT: a timeout is not retried, only a refused or reset connection is.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0

#: The most seconds `send` should take against a Redis that stopped answering.
SEND_BOUND = 5.0

#: How often RQ runs a job again whose worker died mid-job (RQ's abandoned job handling).
#: Temporary SMTP failures are retried apart from it, as the mailer's Retry says.
WORKER_DEATH_RETRIES = 2


def _whole_seconds(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    whole_number(f"RQMailer.{attribute.name}", value, unit="seconds")


def connect(url: str) -> redis.Redis:
    """A Redis connection for ``url`` with the bounded waits `send` needs on a request's path."""
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            # A short retry bridges a blip (a refused or reset connection); a timeout is not
            # retried, so a Redis that stopped answering costs one SOCKET_TIMEOUT, not several.
            retry=RedisRetry(
                ExponentialBackoff(cap=0.1, base=0.01),
                3,
                supported_errors=(redis.exceptions.ConnectionError,),
            ),
        )
    except ValueError as error:
        raise ConfigurationError(f"RQMailer: not a Redis URL: {url!r} ({error})") from error


def _queue(queue: rq.Queue | redis.Redis | str, queue_name: str) -> rq.Queue:
    if isinstance(queue, str):
        queue = connect(queue)
    elif isinstance(queue, redis.Redis):
        _check_waits(queue)
    elif isinstance(queue, rq.Queue):
        _check_waits(queue.connection)
    else:
        raise ConfigurationError(
            "RQMailer needs an rq.Queue, a redis.Redis or a redis:// URL, "
            f"not {type(queue).__name__}"
        )
    if isinstance(queue, redis.Redis):
        if not isinstance(queue_name, str) or not queue_name or not queue_name.isprintable():
            raise ConfigurationError(
                f"RQMailer.queue_name must be a queue name, not {queue_name!r}"
            )
        if any(char.isspace() for char in queue_name):
            raise ConfigurationError(f"RQMailer.queue_name has a space: {queue_name!r}")
        queue = rq.Queue(queue_name, connection=queue)
    return queue


def _check_waits(connection: redis.Redis) -> None:
    """Warn when a connection of the user's own lets one try of `send` wait for a Redis that
    stopped answering longer than half of SEND_BOUND (half: redis-py may try twice)."""
    timeout = connection.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is not None and float(timeout) <= SEND_BOUND / 2:
        return
    log.warning(
        "RQMailer: this Redis connection has socket_timeout=%s, so send() may wait that long "
        "(times the tries of its retry) for a Redis that stopped answering; make it with "
        "socket_timeout=%s, socket_connect_timeout=%s and a retry of connection errors only, "
        "as RQMailer(url) does",
        timeout,
        SOCKET_TIMEOUT,
        CONNECT_TIMEOUT,
    )


@attrs.define(init=False)
class RQMailer:
    """A :class:`~mailreset.mailers.Mailer` that enqueues each message as an RQ job.

    ``RQMailer("redis://localhost:6379/0")``, ``RQMailer(redis.Redis(...))`` or
    ``RQMailer(rq.Queue("mail", connection=...))``. The workers run ``rq worker mail`` (see
    :mod:`mailreset.rq`) with the SMTP settings in their environment.

    ``send`` serialises the message, enqueues it and returns a :class:`JobFuture` once Redis
    stored the job; when Redis does not answer it raises
    :class:`~mailreset.errors.MailerUnavailable` within about 2 seconds (on the connection
    made from a URL; give a connection of your own a ``socket_timeout`` and a
    ``socket_connect_timeout`` for the same bound). One background thread per mailer and
    process (started by the first ``send``) asks Redis, every ``poll_interval`` seconds and in
    one round trip, how the pending jobs went, to settle their Futures; with no job pending it
    sleeps until the next ``send``. A mailer made before ``os.fork()`` works in the child.

    Args:
        queue: an ``rq.Queue``, a ``redis.Redis`` connection, or a ``redis://`` URL.
        queue_name: the RQ queue (ignored when a Queue is given).
        env_prefix: the prefix of the environment variables the worker reads its SMTP
            settings from (``MAIL_`` reads ``MAIL_SERVER``, ...); it travels with each job.
        retry: how temporary failures are retried: at most ``attempts`` attempts, the n-th
            retry after ``retry.ceiling(n)`` seconds rounded up (RQ schedules whole seconds
            and adds no jitter), none after ``deadline`` seconds from enqueuing.
        job_timeout: seconds a worker may spend on one job before RQ kills it.
        result_ttl: seconds RQ keeps a delivered job (and its message) after success.
        failure_ttl: seconds RQ keeps a failed job (and its message) in the failed registry.
        poll_interval: seconds between two looks at the pending jobs' statuses.

    .. versionadded:: 0.1
    """

    queue: rq.Queue
    retry: Retry = attrs.field(validator=retry_setting)
    env_prefix: str = attrs.field(validator=env_prefix_setting)
    job_timeout: int = attrs.field(validator=_whole_seconds)
    result_ttl: int = attrs.field(validator=_whole_seconds)
    failure_ttl: int = attrs.field(validator=_whole_seconds)
    poll_interval: float = attrs.field(validator=positive_seconds)
    _watcher: Watcher = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(init=False, repr=False)
    _owns_connection: bool = attrs.field(init=False, repr=False)

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
        owns_connection = isinstance(queue, str)
        self.__attrs_init__(
            queue=_queue(queue, queue_name),
            retry=retry,
            env_prefix=env_prefix,
            job_timeout=job_timeout,
            result_ttl=result_ttl,
            failure_ttl=failure_ttl,
            poll_interval=poll_interval,
        )
        self._owns_connection = owns_connection

    def __attrs_post_init__(self) -> None:
        self._watcher = Watcher(self.queue, self.poll_interval)
        self._closed = False

    def send(self, message: Message | Envelope) -> JobFuture:
        """Enqueue ``message``; return its :class:`JobFuture` once Redis stored the job.

        Raises :class:`~mailreset.errors.InvalidMessage` for a message that must not be sent,
        :class:`~mailreset.errors.MailerUnavailable` when Redis did not take it,
        :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        if self._closed:
            raise MailerClosed("RQMailer.send after close(): make a new RQMailer")
        outgoing = to_envelope(message)
        message_id = outgoing.message_id or ""
        options: dict[str, Any] = {}
        deaths = min(self.retry.attempts - 1, WORKER_DEATH_RETRIES)
        if deaths:
            options["retry"] = rq.Retry(max=deaths)
        try:
            job = self.queue.enqueue(
                JOB_FUNCTION,
                outgoing.sender,
                list(outgoing.recipients),
                outgoing.data,
                self.env_prefix,
                job_timeout=self.job_timeout,
                result_ttl=self.result_ttl,
                failure_ttl=self.failure_ttl,
                # RQ's default description is the call's repr: the whole message, again.
                description=f"{JOB_FUNCTION} {message_id or '(no Message-ID)'}",
                meta=new_meta(self.retry, message_id),
                on_failure=rq.Callback(FAILURE_CALLBACK),
                **options,
            )
        except redis.exceptions.TimeoutError as error:
            raise MailerUnavailable(
                f"Redis ({self._where()}) did not answer within {SOCKET_TIMEOUT:g}s about the "
                f"message {message_id}: {error}. Redis may still store the job if it wakes up, "
                "so sending the message again may send it twice."
            ) from error
        except (redis.exceptions.RedisError, OSError) as error:
            raise MailerUnavailable(
                f"Redis ({self._where()}) did not take the message {message_id}: {error}. "
                "Nothing was enqueued; send it again once Redis is back."
            ) from error
        future = JobFuture(job.id)
        self._watcher.watch(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every Future this mailer returned is settled (workers must be running).

        Raises :class:`TimeoutError` naming how many jobs are still pending after ``timeout``
        seconds (None: wait as long as it takes).
        """
        if not self._watcher.wait(timeout):
            raise TimeoutError(
                f"RQMailer.flush: {len(self._watcher)} job(s) still pending after "
                f"{timeout}s on queue {self.queue.name!r}: are the workers running "
                "(`rq worker mail --worker-class rq.worker.SimpleWorker`)?"
            )

    def close(self, timeout: float | None = 0.0) -> None:
        """Stop accepting messages and stop watching the jobs.

        Every accepted message is already in Redis and the workers deliver it whether or not
        this mailer still runs. ``close`` waits up to ``timeout`` seconds (None: without limit)
        for the pending Futures; those still pending then end in
        :class:`~mailreset.errors.MailerClosed` (the job itself stays queued). The Redis
        connection made from a URL is closed; one passed in stays open.
        """
        self._closed = True
        if timeout is None or timeout > 0:
            self._watcher.wait(timeout)
        for job_id, future in self._watcher.stop().items():
            future.set_exception(
                MailerClosed(
                    f"RQMailer closed before job {job_id} reported; the job stays queued "
                    "in Redis and a worker will still deliver it"
                )
            )
        if self._owns_connection:
            # The connection made from a URL is this mailer's; one passed in is the caller's.
            self.queue.connection.close()

    def __enter__(self) -> RQMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _where(self) -> str:
        kwargs = self.queue.connection.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
