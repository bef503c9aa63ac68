"""The worker threads of a ThreadedMailer: how many run, when one more starts, when one leaves."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from mailreset._redact import redact
from mailreset.mailers._jobs import STOP, Job, unexpected
from mailreset.transports import Transport

log = logging.getLogger("mailreset")

#: What a worker does with one job: ``take(job, transport) -> (transport to keep, leave)``.
#: A worker told to leave is no longer counted as live (it gave its message back).
Take = Callable[[Job, Transport | None], tuple[Transport | None, bool]]


class Fail(Protocol):
    """How a job ends in an error (:meth:`Endings.fail`)."""

    def __call__(self, job: Job, error: BaseException, *, keep: bool) -> None: ...


def close_quietly(transport: Transport | None) -> None:
    """Close ``transport``; its errors are logged, never raised into a worker."""
    if transport is None:
        return
    try:
        transport.close()
    except Exception as error:
        log.warning("closing %r failed: %s", transport, redact(str(error)))


class WorkerPool:
    """Threads that take jobs off ``jobs``, each keeping its own transport between jobs.

    One worker to start with; another (up to ``workers``) only while messages wait, no worker
    is free for them and a connection has worked (``proven``): a wrong password must cost one
    AUTH, not one per worker. A worker idle for ``idle_timeout`` closes its transport and
    leaves. After the server refused a connection the pool stays at the size that worked
    (``ceiling``) until ``grow_after``.
    """

    def __init__(
        self,
        jobs: queue.Queue[Job],
        workers: int,
        idle_timeout: float,
        take: Take,
        fail: Fail,
    ) -> None:
        self.jobs = jobs
        self.workers = workers
        self.idle_timeout = idle_timeout
        self._take = take
        self._fail = fail
        self.lock = threading.Lock()
        self.live = 0  # worker threads alive
        self.idle = 0  # of which waiting for a message
        self.starved = False  # a busy worker could not grow: the queue was empty then
        self.threads: list[threading.Thread] = []
        self.proven = False  # a connection delivered since the start or the last halt
        self.ceiling = workers  # the most connections the server accepted lately
        self.grow_after = 0.0  # time.monotonic() after which the pool may grow again
        self.closed = False  # no more workers start

    def alive(self) -> int:
        """How many worker threads run now."""
        return sum(1 for thread in self.threads if thread.is_alive())

    def start_one(self) -> None:
        """Start one worker; the caller holds ``lock``."""
        thread = threading.Thread(
            target=self._run, name=f"mailreset-worker-{len(self.threads) + 1}", daemon=True
        )
        self.live += 1
        try:
            thread.start()
        except BaseException:
            self.live -= 1
            raise
        self.threads = [*(t for t in self.threads if t.is_alive()), thread]

    def wake(self) -> None:
        """A message was queued while every worker was busy: grow if that is allowed."""
        # Every worker took its message from an empty queue and is busy with it: nobody
        # else would add the connection this message waits for.
        self.starved = False
        self.maybe_grow()

    def maybe_grow(self) -> None:
        """Start another worker if messages wait, nobody is free for them, and it may grow."""
        if self.idle or not self.proven or self.live >= self._limit():
            return
        if not self.jobs.qsize():
            self.starved = True  # the next send grows instead
            return
        with self.lock:
            if not self.idle and self.live < self._limit() and not self.closed:
                try:
                    self.start_one()
                except RuntimeError as error:  # no new threads (interpreter shutdown)
                    log.debug("no extra worker: %s", error)

    def give_back(self, job: Job, hold_for: float) -> bool:
        """Requeue ``job`` of a worker whose connection the server refused, if others work.

        True: the job is back on the queue and the calling worker, no longer counted, must
        leave; the pool stays at the size that worked for ``hold_for`` seconds. Done in one
        step under the lock, so that two workers refused at once never both leave (and
        strand the queue).
        """
        with self.lock:
            if self.live < 2:
                return False
            try:
                self.jobs.put_nowait(job)
            except queue.Full:
                return False
            self.live -= 1
            self.ceiling = max(1, self.live)
            self.grow_after = time.monotonic() + hold_for
            self.proven = False
        return True

    def stop(self, deadline: float | None) -> bool:
        """Tell every worker to stop and wait for them until ``deadline`` (monotonic).

        True when none is alive any more. Until then the pool may still grow: a close()
        drains the queue with as many connections as a burst would get.
        """
        with self.lock:
            self.closed = True  # a worker started after this would miss its STOP
            live = self.live
        for _ in range(live):
            try:
                self.jobs.put_nowait(STOP)
            except queue.Full:
                break
        for thread in list(self.threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    # -- inside a worker ----------------------------------------------------------------------

    def _limit(self) -> int:
        if self.ceiling < self.workers and time.monotonic() >= self.grow_after:
            self.ceiling = self.workers
        return self.ceiling

    def _run(self) -> None:
        transport: Transport | None = None
        counted = True  # this thread is in self.live
        try:
            while True:
                item: Job | None
                try:
                    # While messages wait, take the next one without the idle bookkeeping.
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    item = self._wait_for_work()
                if item is None:
                    close_quietly(transport)
                    transport = None
                    if self._leave_if_idle():
                        counted = False
                        return
                    continue
                if item is STOP:
                    self.jobs.task_done()
                    return
                leave = False
                try:
                    transport, leave = self._take(item, transport)
                # The last line of defence: a worker never dies, whatever a transport raises
                # (SystemExit from a plug-in included), and the message still gets its end.
                except BaseException as error:
                    log.exception("unexpected error in a mailreset worker")
                    close_quietly(transport)
                    transport = None
                    try:
                        self._fail(item, unexpected(error), keep=False)
                    except BaseException:  # on_failure raised SystemExit, say: Future is set
                        log.exception("on_failure raised; the worker goes on")
                finally:
                    self.jobs.task_done()
                if leave:
                    counted = False
                    return
        finally:
            close_quietly(transport)
            if counted:
                with self.lock:
                    self.live -= 1

    def _wait_for_work(self) -> Job | None:
        """The next queued item, or None after ``idle_timeout``; counted as idle meanwhile."""
        with self.lock:
            self.idle += 1
        try:
            return self.jobs.get(timeout=self.idle_timeout)
        except queue.Empty:
            return None
        finally:
            with self.lock:
                self.idle -= 1

    def _leave_if_idle(self) -> bool:
        with self.lock:
            self.live -= 1
        # A send may have queued a message after our get() gave up and seen us still
        # alive; whoever sees the queue non-empty with nobody left takes it.
        if self.jobs.empty():
            return True
        with self.lock:
            if self.live == 0:
                self.live += 1
                return False
        return True
