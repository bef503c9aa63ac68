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
from mailreset.mailers._protocol import OnFailure, check_on_failure, report
from mailreset.mailers._replay import replay
from mailreset.mailers._retry import GiveBack, Retry, Sleep, deliver
from mailreset.spool import Spool, SpooledMessage
from mailreset.transports import SMTPSettings, SMTPTransport, Transport

log = logging.getLogger("mailreset")


class _Job:
    """One queued message: its Future, its envelope, its spool file and the original message."""

    __slots__ = ("envelope", "future", "message", "path", "running")

    def __init__(self, envelope: Envelope, path: Path | None, message: Message | None) -> None:
        self.future: Future[Delivery] = Future()
        self.envelope = envelope
        self.path = path
        #: What the caller passed, for on_failure; None for an Envelope, a spooled one, or
        #: when there is no on_failure (report() then parses the envelope back if needed).
        self.message = message
        #: Its Future was set running (a message given back to the queue keeps that).
        self.running = False


TransportSource = SMTPSettings | Transport | Callable[[], Transport]

_STOP: Any = object()


def _close_quietly(transport: Transport | None) -> None:
    """Close ``transport``; its errors are logged, never raised into a worker."""
    if transport is None:
        return
    try:
        transport.close()
    except Exception as error:
        log.warning("closing %r failed: %s", transport, redact(str(error)))
    return


def _unexpected(error: BaseException) -> PermanentFailure:
    """A DeliveryError for a Future, from an error no transport should raise.

    Not retried (nothing says a retry helps), and ``maybe_delivered``: the transport broke
    somewhere inside ``send``, so nobody can say that the server did not take the message.
    """
    try:
        text = str(error)
    except Exception:  # an exception whose own str() raises must not kill the worker
        text = "(its message cannot be shown)"
    return PermanentFailure(
        f"unexpected {type(error).__name__} while sending: {text}",
        original_error=error,
        maybe_delivered=True,
    )


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
        self._queue: queue.Queue[_Job] = queue.Queue(self.max_queue)
        self._lock = threading.Lock()
        self._live = 0  # worker threads alive
        self._idle = 0  # of which waiting for a message
        self._starved = False  # a busy worker could not grow: the queue was empty then
        self._threads: list[threading.Thread] = []
        self._started = False
        self._replayed = threading.Event()
        self._replayed.set()
        self._proven = False  # a connection delivered since the start or the last halt
        self._ceiling = self.workers  # the most connections the server accepted lately
        self._grow_after = 0.0  # time.monotonic() after which the pool may grow again
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
        alive = sum(1 for thread in self._threads if thread.is_alive())
        return (
            f"<ThreadedMailer {state} workers={alive}/{self.workers} queued={self._queue.qsize()}>"
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
        job = _Job(
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
            self._forget(job)
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
        with tasks.all_tasks_done:
            while tasks.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{tasks.unfinished_tasks} message(s) still pending after {timeout}s; "
                        "wait longer, or raise workers"
                    )
                tasks.all_tasks_done.wait(left)
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
        with self._lock:
            live = self._live
        for _ in range(live):
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
        for thread in list(self._threads):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        if self.spool is not None and not any(thread.is_alive() for thread in self._threads):
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
                if item is not _STOP:
                    error = TemporaryFailure(
                        "the mailer closed before sending this message (close(timeout=...) "
                        "ran out)"
                        + ("; it stays in the spool for the next start" if item.path else "")
                    )
                    self._fail(item, error, keep=True)
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

    def _limit(self) -> int:
        # After the server refused a connection, the pool stays at the size that worked until
        # a backoff has passed; then it may try to grow again.
        if self._ceiling < self.workers and time.monotonic() >= self._grow_after:
            self._ceiling = self.workers
        return self._ceiling

    def _maybe_grow(self) -> None:
        # Another connection only while messages wait, no worker is free for them, and a
        # connection has worked: a wrong password must cost one AUTH, not one per worker.
        if self._idle or not self._proven or self._live >= self._limit():
            return
        if not self._queue.qsize():
            self._starved = True  # the next send grows instead
            return
        with self._lock:
            if not self._idle and self._live < self._limit() and not self._closed:
                try:
                    self._spawn()
                except RuntimeError as error:  # no new threads (interpreter shutdown)
                    log.debug("no extra worker: %s", error)

    def _backoff(self, delay: float) -> None:
        self._maybe_grow()
        self._sleep(delay)

    def _work(self) -> None:
        transport: Transport | None = None
        counted = True  # this thread is in self._live
        try:
            while True:
                item: _Job | None
                try:
                    # While messages wait, take the next one without the idle bookkeeping.
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = self._wait_for_work()
                if item is None:
                    _close_quietly(transport)
                    transport = None
                    if self._leave_if_idle():
                        counted = False
                        return
                    continue
                if item is _STOP:
                    self._queue.task_done()
                    return
                leave = False
                try:
                    transport, leave = self._take(item, transport)
                # The last line of defence: a worker never dies, whatever a transport raises
                # (SystemExit from a plug-in included), and the message still gets its end.
                except BaseException as error:
                    log.exception("unexpected error in a mailreset worker")
                    _close_quietly(transport)
                    transport = None
                    try:
                        self._fail(item, _unexpected(error), keep=False)
                    except BaseException:  # on_failure raised SystemExit, say: Future is set
                        log.exception("on_failure raised; the worker goes on")
                finally:
                    self._queue.task_done()
                if leave:
                    counted = False
                    return
        finally:
            _close_quietly(transport)
            if counted:
                with self._lock:
                    self._live -= 1

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

    def _halted(self) -> DeliveryError | None:
        """The failure no retry fixes that stops connecting for now, if any."""
        error = self._halt_error
        if error is None or time.monotonic() >= self._halt_until:
            return None
        return error

    def _take(self, job: _Job, transport: Transport | None) -> tuple[Transport | None, bool]:
        """Deliver ``job``; return the transport to keep and whether this worker leaves.

        A worker told to leave is no longer counted in ``_live`` (it gave its message back).
        """
        if not job.running:
            job.running = True
            if not job.future.set_running_or_notify_cancel():
                self._forget(job)
                return transport, False
        halted = self._halted()
        if halted is not None:
            self._fail(job, halted, keep=True)
            return transport, False
        if transport is None:
            try:
                transport = self._factory()
            except Exception as error:
                log.error("the transport factory raised", exc_info=error)
                self._fail(
                    job,
                    PermanentFailure(
                        f"the transport factory raised {type(error).__name__}: {error}",
                        original_error=error,
                    ),
                    keep=False,
                )
                return None, False
        if self._proven:
            self._maybe_grow()
        was_open = bool(getattr(transport, "is_open", True))

        def give_back(error: TemporaryFailure) -> bool:
            # Refused at connect (421, or refused) while other connections to the server
            # work: the server's connection limit, not this message's fault. The message
            # goes back on the queue and this worker leaves, in one step under the lock, so
            # that two workers refused at once never both leave (and strand the queue).
            if was_open:
                return False
            refused = error.smtp_code == 421 or isinstance(
                error.original_error, ConnectionRefusedError
            )
            if not refused:
                return False
            with self._lock:
                if self._live < 2:
                    return False
                try:
                    self._queue.put_nowait(job)
                except queue.Full:
                    return False
                self._live -= 1  # this worker, which leaves uncounted
                self._ceiling = max(1, self._live)
                self._grow_after = time.monotonic() + self.retry.maximum
                self._proven = False
            return True

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
                self._ceiling,
            )
            _close_quietly(transport)
            return None, True
        except DeliveryError as error:
            if error.every_message:
                self._halt(job, error)
                _close_quietly(transport)
                return None, False
            self._fail(job, error, keep=False)
            return transport, False
        except Exception as error:
            log.error("unexpected error from %r", _safe_repr(transport), exc_info=error)
            self._fail(job, _unexpected(error), keep=False)
            _close_quietly(transport)
            return None, False
        self._proven = True
        self._succeed(job, delivery)
        return transport, False

    def _halt(self, job: _Job, error: DeliveryError) -> None:
        """One attempt showed that no retry helps: stop connecting, end what waits."""
        with self._lock:
            self._halt_error = error
            self._halt_until = time.monotonic() + self.retry.maximum
            self._proven = False
        log.error(
            "%s; no connection for %.0fs, and the messages waiting now fail with this error%s",
            redact(str(error)),
            self.retry.maximum,
            " (they stay in the spool for the next start)" if self.spool is not None else "",
        )
        self._fail(job, error, keep=True)
        stops = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                if item is _STOP:
                    stops += 1
                    continue
                if not item.running:
                    item.running = True
                    if not item.future.set_running_or_notify_cancel():
                        self._forget(item)
                        continue
                self._fail(item, error, keep=True)
            finally:
                self._queue.task_done()
        for _ in range(stops):  # close() asked other workers to stop: pass it on
            self._queue.put(_STOP)

    def _forget(self, job: _Job) -> None:
        if job.path is not None and self.spool is not None:
            try:
                self.spool.remove(job.path)
            except OSError as error:
                log.warning("could not remove spool file %s: %s", job.path.name, error)

    def _succeed(self, job: _Job, delivery: Delivery) -> None:
        self._forget(job)
        if not job.future.done():
            job.future.set_result(delivery)

    def _fail(self, job: _Job, error: BaseException, *, keep: bool) -> None:
        """End ``job`` with ``error`` exactly once; ``keep`` leaves its spool file in place."""
        if job.path is not None and self.spool is not None and not keep:
            try:
                self.spool.set_aside(job.path)
            except Exception as spool_error:
                log.warning("could not set spool file %s aside: %s", job.path, spool_error)
        if job.future.done():
            return
        if not job.running:
            job.running = True
            if not job.future.set_running_or_notify_cancel():
                return
        # on_failure first: once a Future is done, its callback has been told as well.
        try:
            report(self.on_failure, job.message, job.envelope, error)
        finally:
            job.future.set_exception(error)

    def _requeue(self, left: SpooledMessage) -> None:
        """Queue a message the spool replay found (blocking while the queue is full)."""
        self._queue.put(_Job(left.envelope, left.path, None))
