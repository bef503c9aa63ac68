"""Getting messages to a transport off the request path: mailers and their value objects.

.. versionadded:: 0.1
"""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import email.utils
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any, Protocol, runtime_checkable

import attrs

from mailreset._clock import Clock, utc_now
from mailreset._delivery import Delivery
from mailreset._envelope import Outgoing, prepare
from mailreset._future import PendingDelivery
from mailreset._redact import redact
from mailreset.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidMessage,
    MailerClosed,
    QueueFull,
    TemporaryFailure,
)
from mailreset.spool import Spool
from mailreset.transports import MemoryTransport, SMTPSettings, SMTPTransport, Transport

__all__ = ["Delivery", "Mailer", "Retry", "SyncMailer", "ThreadedMailer"]

log = logging.getLogger("mailreset")


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(
            f"Retry.{attribute.name} must be a number of seconds >= 0, not {value!r}"
        )


def _attempts(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"Retry.attempts must be a whole number >= 1, not {value!r}")


@attrs.frozen(kw_only=True)
class Retry:
    """How temporary failures are retried: exponential backoff with full jitter.

    The n-th retry waits a random time up to ``min(maximum, initial * 2 ** (n - 1))``; no retry
    starts after ``deadline`` seconds from the first attempt. Permanent failures are never
    retried. ``Retry(attempts=1)`` turns retrying off.

    Attributes:
        attempts: the most attempts for one message, the first included.
        initial: the first backoff ceiling, in seconds.
        maximum: the largest backoff ceiling, in seconds.
        deadline: seconds after which a message is given up, whatever ``attempts`` says.

    .. versionadded:: 0.1
    """

    attempts: int = attrs.field(default=5, validator=_attempts)
    initial: float = attrs.field(default=0.5, validator=_positive)
    maximum: float = attrs.field(default=30.0, validator=_positive)
    deadline: float = attrs.field(default=300.0, validator=_positive)

    def ceiling(self, retry_number: int) -> float:
        """The backoff ceiling before retry number ``retry_number`` (1-based)."""
        return float(min(self.maximum, self.initial * 2 ** (retry_number - 1)))


@runtime_checkable
class Mailer(Protocol):
    """**Protocol:** something that accepts messages for delivery.

    ``send`` returns at once with a :class:`~concurrent.futures.Future` that ends in a
    :class:`Delivery` or in the :class:`~mailreset.errors.DeliveryError` that stopped it.

    .. versionadded:: 0.1
    """

    def send(self, message: EmailMessage) -> Future[Delivery]:
        """Accept ``message`` for delivery; the Future tells how it went."""
        ...

    def close(self) -> None:
        """Deliver what was accepted, then release every resource."""
        ...


# -- delivery with retries -------------------------------------------------------------------

Sleep = Callable[[float], None]
OnFailure = Callable[[Message, BaseException], None]


def _message_of(outgoing: Outgoing) -> EmailMessage:
    """An EmailMessage back from spooled bytes, Bcc recipients restored as a Bcc header."""
    message = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default always makes one
    shown = {
        address.lower()
        for _, address in email.utils.getaddresses(
            [str(value) for name in ("To", "Cc") for value in message.get_all(name, ())]
        )
    }
    hidden = [address for address in outgoing.recipients if address.lower() not in shown]
    if hidden:
        message["Bcc"] = ", ".join(hidden)
    return message


def _send_once(transport: Transport, item: Message | Outgoing) -> Delivery:
    if isinstance(transport, (SMTPTransport, MemoryTransport)):
        outgoing = item if isinstance(item, Outgoing) else prepare(item)
        return transport._send_outgoing(outgoing)
    message = _message_of(item) if isinstance(item, Outgoing) else item
    return transport.send(message)


def _elapsed(clock: Clock, started: datetime) -> float:
    return (clock() - started).total_seconds()


def _deliver(
    transport: Transport,
    item: Message | Outgoing,
    retry: Retry,
    *,
    clock: Clock,
    sleep: Sleep,
    jitter: Callable[[], float],
    stopping: Callable[[], bool] = lambda: False,
) -> Delivery:
    """Send ``item``, retrying temporary failures as ``retry`` says; raise the final error."""
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            delivery = _send_once(transport, item)
        except TemporaryFailure as error:
            delay = retry.ceiling(attempt) * jitter()
            elapsed = _elapsed(clock, started)
            if attempt >= retry.attempts or elapsed + delay > retry.deadline:
                raise
            log.info(
                "temporary failure (attempt %d of %d), retrying in %.2fs: %s",
                attempt,
                retry.attempts,
                delay,
                redact(str(error)),
            )
            sleep(delay)
            continue
        if attempt == 1 and clock is utc_now and isinstance(transport, SMTPTransport):
            # SMTPTransport timed the one attempt with a monotonic clock already: skip the
            # datetime arithmetic and the copy on the common path.
            return delivery
        return attrs.evolve(delivery, attempts=attempt, elapsed=_elapsed(clock, started))


def _report(on_failure: OnFailure | None, message: Message, error: BaseException) -> None:
    log.warning("message %s not delivered: %s", message.get("Message-ID", "?"), redact(str(error)))
    if on_failure is None:
        return
    try:
        on_failure(message, error)
    except Exception:
        log.exception("on_failure raised; the failure it was told about is logged above")


def _check_on_failure(on_failure: object) -> None:
    if on_failure is not None and not callable(on_failure):
        raise ConfigurationError(
            f"on_failure must be a callable (message, error), not {on_failure!r}"
        )


class SyncMailer:
    """Sends in the caller's thread; the returned Future is already done.

    For scripts, tests and task queues that already run off the request path. An invalid
    message raises :class:`~mailreset.errors.InvalidMessage` from ``send``; a delivery failure
    ends the Future (and goes to ``on_failure``).

    Args:
        transport: a :class:`~mailreset.transports.Transport` or :class:`SMTPSettings`.
        retry: how temporary failures are retried; None (the default) means not at all,
            since retrying blocks the caller.
        on_failure: called as ``on_failure(message, error)`` for each final failure.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        transport: Transport | SMTPSettings,
        *,
        retry: Retry | None = None,
        on_failure: OnFailure | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if isinstance(transport, SMTPSettings):
            transport = SMTPTransport(transport)
        if not isinstance(transport, Transport):
            raise ConfigurationError(
                f"SyncMailer needs a Transport or SMTPSettings, not {type(transport).__name__}"
            )
        _check_on_failure(on_failure)
        self.transport = transport
        self.retry = retry if retry is not None else Retry(attempts=1)
        self.on_failure = on_failure
        self._clock = clock or utc_now
        self._sleep = sleep or time.sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"<SyncMailer {self.transport!r}>"

    def send(self, message: Message) -> Future[Delivery]:
        """Deliver ``message`` now; return a done Future with the Delivery or the error."""
        if self._closed:
            raise MailerClosed("this SyncMailer is closed")
        outgoing = prepare(message)
        future: Future[Delivery] = Future()
        try:
            delivery = _deliver(
                self.transport,
                outgoing
                if isinstance(self.transport, (SMTPTransport, MemoryTransport))
                else message,
                self.retry,
                clock=self._clock,
                sleep=self._sleep,
                jitter=random.random,
            )
        except DeliveryError as error:
            future.set_exception(error)
            _report(self.on_failure, message, error)
        else:
            future.set_result(delivery)
        return future

    def close(self) -> None:
        """Close the transport; later sends raise MailerClosed."""
        self._closed = True
        self.transport.close()

    def __enter__(self) -> SyncMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the threaded mailer -----------------------------------------------------------------------

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
        _check_on_failure(on_failure)
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
        self._pid = os.getpid()
        self._fork = _forks[0]
        self._queue: queue.Queue[PendingDelivery] = queue.Queue(self.max_queue)
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

    def send(self, message: Message, *, timeout: float | None = None) -> Future[Delivery]:
        """Queue ``message`` for delivery; return its Future at once.

        Raises :class:`~mailreset.errors.QueueFull` when ``max_queue`` messages wait (at once,
        or after ``timeout`` seconds when given), :class:`~mailreset.errors.MailerClosed`
        after :meth:`close`. With a spool, the message is serialised and on disk first, so an
        invalid one raises :class:`~mailreset.errors.InvalidMessage` here; without, it ends
        its Future.
        """
        if self._closed:
            raise MailerClosed("this ThreadedMailer is closed; make a new one to send more")
        if self._fork != _forks[0]:
            self._after_fork()
        # The hot path: no serialisation, no lock but the queue's, few allocations.
        if self.spool is None:
            future = PendingDelivery(message, None, message)
        else:
            outgoing = prepare(message)
            future = PendingDelivery(outgoing, self.spool.write(outgoing), message)
        try:
            if timeout is None:
                self._queue.put(future, False)  # put_nowait is one more call frame
            else:
                self._queue.put(future, timeout=timeout)
        except queue.Full:
            if future.path is not None:
                self.spool.remove(future.path)  # type: ignore[union-attr]
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
        return future

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
                    replay = threading.Thread(
                        target=self._replay, name="mailreset-spool-replay", daemon=True
                    )
                    replay.start()
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
                if item.set_running_or_notify_cancel():
                    item.set_exception(error)
                _report(self.on_failure, item.message or _message_of(item.payload), error)
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
                item: PendingDelivery | None
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

    def _wait_for_work(self) -> PendingDelivery | None:
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

    def _handle(self, future: PendingDelivery, transport: Transport) -> None:
        payload, path, message = future.payload, future.path, future.message
        if not future.set_running_or_notify_cancel():
            if path is not None and self.spool is not None:
                self.spool.remove(path)
            return
        try:
            delivery = _deliver(
                transport,
                payload,
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
            _report(self.on_failure, message or _message_of(payload), error)
            return
        if path is not None and self.spool is not None:
            self.spool.remove(path)
        future.set_result(delivery)

    def _replay(self) -> None:
        spool = self.spool
        assert spool is not None  # only started with a spool
        try:
            count = 0
            for left in spool.leftovers():
                self._queue.put(PendingDelivery(left.outgoing, left.path, None))
                count += 1
            if count:
                log.info("queued %d message(s) left in the spool %s", count, spool.path)
        except Exception:
            log.exception("the spool replay stopped; the rest stays on disk for the next start")
        finally:
            self._replayed.set()
