"""ThreadedMailer: a bounded queue and a pool of worker threads, each with one connection."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from email.message import Message
from pathlib import Path

from mailreset._clock import Clock, utc_now
from mailreset._convert import seconds, whole_number
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope, to_envelope
from mailreset._forks import fork_lock, forks
from mailreset._redact import redact
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    MailerClosed,
    MailerUnavailable,
    PermanentFailure,
    QueueFull,
    TemporaryFailure,
)
from mailreset.mailers._jobs import STOP, Endings, Job, unexpected
from mailreset.mailers._pool import WorkerPool, close_quietly
from mailreset.mailers._protocol import OnFailure, check_on_failure
from mailreset.mailers._replay import replay
from mailreset.mailers._retry import GiveBack, Retry, Sleep, deliver
from mailreset.spool import Spool, SpooledMessage
from mailreset.transports import SMTPSettings, SMTPTransport, Transport

log = logging.getLogger("mailreset")


TransportSource = SMTPSettings | Transport | Callable[[], Transport]


def _safe_repr(transport: object) -> str:
    """``repr(transport)`` for a log line, even when that repr itself raises."""
    try:
        return repr(transport)
    except Exception:
        return f"<{type(transport).__name__}>"


def _resolve(transport: object, workers: int) -> tuple[Callable[[], Transport], int]:
    if isinstance(transport, SMTPSettings):
        settings = transport
        return (lambda: SMTPTransport(settings)), workers
    if isinstance(transport, Transport):
        single = transport
        return (lambda: single), 1
    if callable(transport):
        return transport, workers
    raise ConfigurationError(
        "ThreadedMailer(transport=...) takes SMTPSettings, a Transport, or a zero-argument "
        f"factory of Transports, not {type(transport).__name__}"
    )


def _whole(name: str, value: object, minimum: int) -> int:
    return whole_number(f"ThreadedMailer {name}", value, minimum=minimum)


def _seconds(name: str, value: object) -> float:
    return seconds(f"ThreadedMailer {name}", value)


class ThreadedMailer:
    """Sends from background threads over persistent connections; ``send`` only enqueues.

    ``send`` puts the message on a bounded queue and returns a
    :class:`~concurrent.futures.Future` at once, whatever the server does. Worker threads,
    each holding one persistent connection, take messages off the queue: one to start with,
    more (up to ``workers``) only while messages wait, and a connection idle for
    ``idle_timeout`` seconds is closed. Temporary failures are retried with exponential
    backoff and full jitter (``retry``); permanent ones are not. A message that finally fails
    goes to its Future and to ``on_failure(message, error)``, never dropped silently.

    Workers start in the process that first sends, so a mailer made before a web server
    forks works in every child. With ``spool``, each message is on disk before ``send``
    returns and the mailer starts at once, replaying what an earlier process left.

    Args:
        transport: :class:`SMTPSettings` (one :class:`SMTPTransport` per worker), a
            zero-argument factory of Transports (one per worker), or a single Transport
            (then one worker, one connection).
        workers: the most connections (and threads) it opens.
        max_queue: the most messages waiting; ``send`` raises QueueFull beyond it.
        retry: how temporary failures are retried.
        spool: a folder (or :class:`~mailreset.spool.Spool`) for a durable outbox.
        on_failure: called as ``on_failure(message, error)`` in a worker thread.
        idle_timeout: seconds after which an idle connection (and its thread) is closed.
        drain_at_exit: close (and so deliver what is queued) when the interpreter exits.
        exit_timeout: seconds ``drain_at_exit`` waits at most.
        clock: the clock for the retry deadline; sleep: how backoff waits (tests pass fakes).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        transport: TransportSource,
        *,
        workers: int = 16,
        max_queue: int = 10_000,
        retry: Retry | None = None,
        spool: str | os.PathLike[str] | Spool | None = None,
        on_failure: OnFailure | None = None,
        idle_timeout: float = 60.0,
        drain_at_exit: bool = False,
        exit_timeout: float = 30.0,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        workers = _whole("workers", workers, 1)
        self.max_queue = _whole("max_queue", max_queue, 1)
        self.idle_timeout = _seconds("idle_timeout", idle_timeout)
        self.exit_timeout = _seconds("exit_timeout", exit_timeout)
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"ThreadedMailer retry must be a Retry, not {retry!r}")
        check_on_failure(on_failure)
        self._factory, self.workers = _resolve(transport, workers)
        self.retry = retry if retry is not None else Retry()
        self.on_failure = on_failure
        self.spool = spool if isinstance(spool, Spool) or spool is None else Spool(spool)
        self._endings = Endings(self.spool, on_failure)
        self._clock = clock or utc_now
        self._sleep = sleep or time.sleep
        self._closed = False
        self._drain_at_exit = drain_at_exit
        if drain_at_exit:
            atexit.register(self._close_at_exit)
        self._new_process_state()
        if self.spool is not None:
            self.start()

    def _new_process_state(self) -> None:
        self._fork = forks[0]
        self._queue: queue.Queue[Job] = queue.Queue(self.max_queue)
        self._pool = WorkerPool(
            self._queue, self.workers, self.idle_timeout, self._take, self._endings.fail
        )
        self._pool.closed = self._closed
        self._started = False
        self._replayed = threading.Event()
        self._replayed.set()
        self._halt_error: DeliveryError | None = None  # a failure no retry fixes
        self._halt_until = 0.0  # time.monotonic() until which nothing connects

    def _check_fork(self) -> None:
        # A forked child holds copies of the parent's queue and locks (perhaps taken at the
        # moment of the fork) and of threads that do not run in it: start afresh.
        if self._fork != forks[0]:
            with fork_lock[0]:
                if self._fork != forks[0]:
                    self._after_fork()

    def __repr__(self) -> str:
        self._check_fork()
        state = "closed" if self._closed else "open"
        return (
            f"<ThreadedMailer {state} workers={self._pool.alive()}/{self.workers} "
            f"queued={self._queue.qsize()}>"
        )

    # -- the caller's side -------------------------------------------------------------------

    def send(
        self, message: Message | Envelope, *, timeout: float | None = None
    ) -> Future[Delivery]:
        """Queue ``message`` for delivery; return its Future at once.

        The message is checked and serialised here (:meth:`Envelope.from_message`), so
        anything but a Message or an Envelope raises :class:`TypeError` and an invalid
        message raises :class:`~mailreset.errors.InvalidMessage` in the caller's thread, before
        anything is queued. With a spool, the envelope is on disk before ``send`` returns.

        Raises :class:`~mailreset.errors.QueueFull` when ``max_queue`` messages wait (at once,
        or after ``timeout`` seconds when given), :class:`~mailreset.errors.MailerClosed`
        after :meth:`close`, :class:`~mailreset.errors.MailerUnavailable` when the spool
        cannot store the message (nothing was queued then).
        """
        if self._closed:
            raise MailerClosed("this ThreadedMailer is closed; make a new one to send more")
        self._check_fork()
        envelope = to_envelope(message)
        job = Job(
            envelope,
            None if self.spool is None else self._write(envelope),
            # Kept only for on_failure: a queued message would otherwise cost its parse tree
            # on top of its bytes (3x its wire size instead of about 1x).
            message if self.on_failure is not None and isinstance(message, Message) else None,
        )
        try:
            if timeout is None:
                self._queue.put(job, False)  # put_nowait is one more call frame
            else:
                self._queue.put(job, timeout=timeout)
        except queue.Full:
            self._endings.forget(job)
            raise QueueFull(
                f"{self.max_queue} messages are waiting (max_queue); raise max_queue or "
                "workers, or pass send(..., timeout=seconds) to wait for room"
            ) from None
        pool = self._pool
        if not pool.live:
            self._start_first()
        elif pool.starved:
            pool.wake()
        return job.future

    def _write(self, envelope: Envelope) -> Path:
        """Put ``envelope`` on the spool; a disk that fails is the caller's to know about."""
        assert self.spool is not None  # only called with a spool
        try:
            return self.spool.write(envelope)
        except OSError as error:
            raise MailerUnavailable(
                f"the spool {self.spool.path} could not store the message ({error}); nothing "
                "was queued"
            ) from error

    def start(self) -> None:
        """Start the first worker (and the spool replay) now instead of on the first send."""
        self._check_fork()
        self._start_first()

    def _start_first(self) -> None:
        pool = self._pool
        with pool.lock:
            if not self._started:
                self._started = True
                if self.spool is not None:
                    self._replayed.clear()
                    replaying = threading.Thread(
                        target=replay,
                        args=(self.spool, self._requeue, self._replayed),
                        name="mailreset-spool-replay",
                        daemon=True,
                    )
                    replaying.start()
            if pool.live == 0:
                pool.start_one()

    def _after_fork(self) -> None:
        # The parent's threads, connections and queued messages stay the parent's.
        log.debug("ThreadedMailer used in a new process (pid %d): fresh workers", os.getpid())
        self._new_process_state()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message was delivered or finally failed; return True.

        True means every Future of a message sent so far is settled. Raises
        :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        self._check_fork()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._replayed.wait(timeout):
            raise TimeoutError(f"the spool replay did not finish within {timeout}s")
        tasks = self._queue
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with tasks.all_tasks_done:
            if not tasks.all_tasks_done.wait_for(lambda: not tasks.unfinished_tasks, left):
                raise TimeoutError(
                    f"{tasks.unfinished_tasks} message(s) still pending after {timeout}s; "
                    "wait longer, or raise workers"
                )
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting, deliver what is queued, then disconnect.

        When ``timeout`` seconds pass first, the messages still queued end their Futures with
        a TemporaryFailure and go to ``on_failure`` (a spool keeps them for the next start),
        and :class:`TimeoutError` is raised. Once every worker stopped, the spool is closed:
        what stayed on disk (after a failure no retry fixes, say) is sent by the next mailer
        on that folder, in this process or another.
        """
        if self._drain_at_exit:
            atexit.unregister(self._close_at_exit)
            self._drain_at_exit = False
        self._closed = True
        if self._fork != forks[0]:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out: TimeoutError | None = None
        try:
            self.flush(timeout)
        except TimeoutError as error:
            timed_out = error
            self._abandon_queued()
        stopped = self._pool.stop(deadline)
        if self.spool is not None and stopped:
            # What stays on disk (kept after a failure no retry fixes, or not sent in time)
            # is for the next mailer on this folder, in this process or the next.
            self.spool.close()
        if timed_out is not None:
            raise TimeoutError(f"{timed_out} (close(timeout=...))") from None

    def _abandon_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                if item is not STOP:
                    error = TemporaryFailure(
                        "the mailer closed before sending this message (close(timeout=...) "
                        "ran out)"
                        + ("; it stays in the spool for the next start" if item.path else "")
                    )
                    self._endings.fail(item, error, keep=True)
            finally:
                self._queue.task_done()

    def _close_at_exit(self) -> None:
        try:
            self.close(self.exit_timeout)
        except TimeoutError as error:
            log.error("ThreadedMailer did not drain at exit: %s", error)

    def __enter__(self) -> ThreadedMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the workers' side --------------------------------------------------------------------

    def _backoff(self, delay: float) -> None:
        self._pool.maybe_grow()
        self._sleep(delay)

    def _halted(self) -> DeliveryError | None:
        """The failure no retry fixes that stops connecting for now, if any."""
        error = self._halt_error
        if error is None or time.monotonic() >= self._halt_until:
            return None
        return error

    def _take(self, job: Job, transport: Transport | None) -> tuple[Transport | None, bool]:
        """Deliver ``job``; return the transport to keep and whether this worker leaves.

        A worker told to leave is no longer counted as live (it gave its message back).
        """
        endings, pool = self._endings, self._pool
        if not job.start():
            endings.forget(job)
            return transport, False
        halted = self._halted()
        if halted is not None:
            endings.fail(job, halted, keep=True)
            return transport, False
        if transport is None:
            try:
                transport = self._factory()
            except Exception as error:
                log.error("the transport factory raised", exc_info=error)
                endings.fail(
                    job,
                    PermanentFailure(
                        f"the transport factory raised {type(error).__name__}: {error}",
                        original_error=error,
                    ),
                    keep=False,
                )
                return None, False
        if pool.proven:
            pool.maybe_grow()
        was_open = bool(getattr(transport, "is_open", True))

        def give_back(error: TemporaryFailure) -> bool:
            # Refused at connect (421, or refused) while other connections to the server
            # work: the server's connection limit, not this message's fault.
            if was_open:
                return False
            refused = error.smtp_code == 421 or isinstance(
                error.original_error, ConnectionRefusedError
            )
            return refused and pool.give_back(job, hold_for=self.retry.maximum)

        try:
            delivery = deliver(
                transport,
                job.envelope,
                self.retry,
                clock=self._clock,
                sleep=self._backoff,
                jitter=random.random,
                give_back=give_back,
            )
        except GiveBack as back:
            log.info(
                "%s refused another connection (%s); the pool shrinks to %d",
                transport,
                redact(str(back.error)),
                pool.ceiling,
            )
            close_quietly(transport)
            return None, True
        except DeliveryError as error:
            if error.every_message:
                self._halt(job, error)
                close_quietly(transport)
                return None, False
            endings.fail(job, error, keep=False)
            return transport, False
        except Exception as error:
            log.error("unexpected error from %r", _safe_repr(transport), exc_info=error)
            endings.fail(job, unexpected(error), keep=False)
            close_quietly(transport)
            return None, False
        pool.proven = True
        endings.succeed(job, delivery)
        return transport, False

    def _halt(self, job: Job, error: DeliveryError) -> None:
        """One attempt showed that no retry helps: stop connecting, end what waits."""
        endings, pool = self._endings, self._pool
        with pool.lock:
            self._halt_error = error
            self._halt_until = time.monotonic() + self.retry.maximum
            pool.proven = False
        log.error(
            "%s; no connection for %.0fs, and the messages waiting now fail with this error%s",
            redact(str(error)),
            self.retry.maximum,
            " (they stay in the spool for the next start)" if self.spool is not None else "",
        )
        endings.fail(job, error, keep=True)
        stops = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                if item is STOP:
                    stops += 1
                elif item.start():
                    endings.fail(item, error, keep=True)
                else:
                    endings.forget(item)
            finally:
                self._queue.task_done()
        for _ in range(stops):  # close() asked other workers to stop: pass it on
            self._queue.put(STOP)

    def _requeue(self, left: SpooledMessage) -> None:
        """Queue a message the spool replay found (blocking while the queue is full)."""
        self._queue.put(Job(left.envelope, left.path, None))
