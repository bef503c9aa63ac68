"""ThreadedMailer: a bounded queue and a pool of worker threads, each with one connection."""

from __future__ import annotations

import atexit
import contextlib
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
from typing import Any

from mailreset._clock import Clock, utc_now
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope, to_envelope
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessage,
    MailerClosed,
    QueueFull,
    TemporaryFailure,
)
from mailreset.mailers._protocol import OnFailure, check_on_failure, report
from mailreset.mailers._replay import replay
from mailreset.mailers._retry import Retry, Sleep, deliver
from mailreset.spool import Spool, SpooledMessage
from mailreset.transports import SMTPSettings, SMTPTransport, Transport

log = logging.getLogger("mailreset")


class _Job:
    """One queued message: its Future, its envelope, its spool file and the original message."""

    __slots__ = ("envelope", "future", "message", "path")

    def __init__(self, envelope: Envelope, path: Path | None, message: Message | None) -> None:
        self.future: Future[Delivery] = Future()
        self.envelope = envelope
        self.path = path
        #: What the caller passed, for on_failure; None for an Envelope or a spooled one.
        self.message = message


TransportSource = SMTPSettings | Transport | Callable[[], Transport]

_STOP: Any = object()

# Bumped in a child after fork: cheaper on send's path than an os.getpid() system call.
_forks = [0]
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


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
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(
            f"ThreadedMailer {name} must be a whole number >= {minimum}, not {value!r}"
        )
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"ThreadedMailer {name} must be a number of seconds > 0, not {value!r}"
        )
    return float(value)


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
        self._fork = _forks[0]
        self._queue: queue.Queue[_Job] = queue.Queue(self.max_queue)
        self._lock = threading.Lock()
        self._live = 0  # worker threads alive
        self._idle = 0  # of which waiting for a message
        self._starved = False  # a busy worker could not grow: the queue was empty then
        self._threads: list[threading.Thread] = []
        self._started = False
        self._replayed = threading.Event()
        self._replayed.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<ThreadedMailer {state} workers={self._live}/{self.workers} "
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
        after :meth:`close`.
        """
        if self._closed:
            raise MailerClosed("this ThreadedMailer is closed; make a new one to send more")
        if self._fork != _forks[0]:
            self._after_fork()
        envelope = to_envelope(message)
        job = _Job(
            envelope,
            None if self.spool is None else self.spool.write(envelope),
            message if isinstance(message, Message) else None,
        )
        try:
            if timeout is None:
                self._queue.put(job, False)  # put_nowait is one more call frame
            else:
                self._queue.put(job, timeout=timeout)
        except queue.Full:
            if job.path is not None and self.spool is not None:
                self.spool.remove(job.path)
            raise QueueFull(
                f"{self.max_queue} messages are waiting (max_queue); raise max_queue or "
                "workers, or pass send(..., timeout=seconds) to wait for room"
            ) from None
        if not self._live:
            self._start_first()
        elif self._starved:
            # Every worker took its message from an empty queue and is busy with it: nobody
            # else would add the connection this message waits for.
            self._starved = False
            self._maybe_grow()
        return job.future

    def start(self) -> None:
        """Start the first worker (and the spool replay) now instead of on the first send."""
        if self._fork != _forks[0]:
            self._after_fork()
        self._start_first()

    def _start_first(self) -> None:
        with self._lock:
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
            if self._live == 0:
                self._spawn()

    def _after_fork(self) -> None:
        # The parent's threads, connections and queued messages stay the parent's.
        log.debug("ThreadedMailer used in a new process (pid %d): fresh workers", os.getpid())
        self._new_process_state()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message was delivered or finally failed.

        Raises :class:`TimeoutError` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._replayed.wait(timeout):
            raise TimeoutError(f"the spool replay did not finish within {timeout}s")
        tasks = self._queue
        with tasks.all_tasks_done:
            while tasks.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{tasks.unfinished_tasks} message(s) still pending after {timeout}s; "
                        "wait longer, or raise workers"
                    )
                tasks.all_tasks_done.wait(left)

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting, deliver what is queued, then disconnect.

        When ``timeout`` seconds pass first, the messages still queued end their Futures with
        a TemporaryFailure and go to ``on_failure`` (a spool keeps them for the next start),
        and :class:`TimeoutError` is raised.
        """
        if self._drain_at_exit:
            atexit.unregister(self._close_at_exit)
            self._drain_at_exit = False
        self._closed = True
        if self._fork != _forks[0]:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out: TimeoutError | None = None
        try:
            self.flush(timeout)
        except TimeoutError as error:
            timed_out = error
            self._abandon_queued()
        with self._lock:
            live = self._live
        for _ in range(live):
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
        for thread in list(self._threads):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        if timed_out is not None:
            raise TimeoutError(f"{timed_out} (close(timeout=...))") from None

    def _abandon_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                error = TemporaryFailure(
                    "the mailer closed before sending this message (close(timeout=...) ran "
                    "out)" + ("; it stays in the spool for the next start" if item.path else "")
                )
                if item.future.set_running_or_notify_cancel():
                    item.future.set_exception(error)
                report(self.on_failure, item.message, item.envelope, error)
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

    def _spawn(self) -> None:
        """Start one worker; the caller holds ``self._lock``."""
        thread = threading.Thread(
            target=self._work, name=f"mailreset-worker-{len(self._threads) + 1}", daemon=True
        )
        self._live += 1
        try:
            thread.start()
        except BaseException:
            self._live -= 1
            raise
        self._threads = [*(t for t in self._threads if t.is_alive()), thread]

    def _maybe_grow(self) -> None:
        # Another connection only while messages wait and no worker is free for them.
        if self._idle or self._live >= self.workers:
            return
        if not self._queue.qsize():
            self._starved = True  # the next send grows instead
            return
        with self._lock:
            if not self._idle and self._live < self.workers and not self._closed:
                try:
                    self._spawn()
                except RuntimeError as error:  # no new threads (interpreter shutdown)
                    log.debug("no extra worker: %s", error)

    def _backoff(self, delay: float) -> None:
        self._maybe_grow()
        self._sleep(delay)

    def _work(self) -> None:
        transport: Transport | None = None
        try:
            while True:
                item: _Job | None
                try:
                    # While messages wait, take the next one without the idle bookkeeping.
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = self._wait_for_work()
                if item is None:
                    if transport is not None:
                        transport.close()
                        transport = None
                    if self._leave_if_idle():
                        return
                    continue
                if item is _STOP:
                    self._queue.task_done()
                    with self._lock:
                        self._live -= 1
                    return
                self._maybe_grow()
                try:
                    if transport is None:
                        transport = self._factory()
                    self._handle(item, transport)
                finally:
                    self._queue.task_done()
        finally:
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()

    def _wait_for_work(self) -> _Job | None:
        """The next queued item, or None after ``idle_timeout``; counted as idle meanwhile."""
        with self._lock:
            self._idle += 1
        try:
            return self._queue.get(timeout=self.idle_timeout)
        except queue.Empty:
            return None
        finally:
            with self._lock:
                self._idle -= 1

    def _leave_if_idle(self) -> bool:
        with self._lock:
            self._live -= 1
        # A send may have queued a message after our get() gave up and seen us still
        # alive; whoever sees the queue non-empty with nobody left takes it.
        if self._queue.empty():
            return True
        with self._lock:
            if self._live == 0:
                self._live += 1
                return False
        return True

    def _handle(self, job: _Job, transport: Transport) -> None:
        future, path = job.future, job.path
        if not future.set_running_or_notify_cancel():
            if path is not None and self.spool is not None:
                self.spool.remove(path)
            return
        try:
            delivery = deliver(
                transport,
                job.envelope,
                self.retry,
                clock=self._clock,
                sleep=self._backoff,
                jitter=random.random,
            )
        except Exception as error:
            if path is not None and self.spool is not None:
                self.spool.set_aside(path)
            future.set_exception(error)
            if not isinstance(error, (DeliveryError, InvalidMessage)):
                log.error("unexpected error from %r", transport, exc_info=error)
            report(self.on_failure, job.message, job.envelope, error)
            return
        if path is not None and self.spool is not None:
            self.spool.remove(path)
        future.set_result(delivery)

    def _requeue(self, left: SpooledMessage) -> None:
        """Queue a message the spool replay found (blocking while the queue is full)."""
        self._queue.put(_Job(left.envelope, left.path, None))
