"""The watcher: settles the Futures of the jobs one :class:`~mailreset.rq.RQMailer` enqueued.

One thread per mailer and process, started by the first job it is given. While jobs are
pending it asks Redis, every ``poll_interval`` seconds and in one round trip, how they went;
while none is pending it sleeps on a condition until the next ``send`` (idle means asleep).
A mailer made before ``os.fork()`` gets a fresh lock and no thread in the child, whose own
watcher starts with its first job.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import redis
import rq
import rq.job

from mailreset._delivery import Delivery
from mailreset.errors import DeliveryError
from mailreset.rq._jobs import META_KEY, outcome

__all__ = ["JobFuture", "Watcher"]

log = logging.getLogger("mailreset")

# Statuses of a job that may still run; its meta is read only once a worker wrote an outcome.
_RUNNING = frozenset({"queued", "started", "scheduled", "deferred"})


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


class Watcher:
    """Settles :class:`JobFuture` objects from their jobs' statuses in Redis."""

    def __init__(self, queue: rq.Queue, poll_interval: float) -> None:
        self.queue = queue
        self.poll_interval = poll_interval
        self._pending: dict[str, JobFuture] = {}
        self._fresh_state()
        _live.add(self)

    def _fresh_state(self) -> None:
        # `changed` guards `_pending` and wakes the sleeping thread and flush(); `_stop` cuts a
        # poll interval short. Both are made anew in a forked child, where a lock held by a
        # thread of the parent would stay held forever.
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def watch(self, future: JobFuture) -> None:
        """Settle ``future`` once its job ended."""
        with self._changed:
            was_idle = not self._pending
            self._pending[future.job_id] = future
            self._start()
            if was_idle:
                self._changed.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait until no Future is pending; False when ``timeout`` seconds passed first."""
        with self._changed:
            if self._pending:
                self._start()  # a forked child's first look at Futures made in the parent
            return self._changed.wait_for(lambda: not self._pending, timeout)

    def stop(self) -> dict[str, JobFuture]:
        """Stop the thread; return the Futures still pending (the caller settles them)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._changed:
            left, self._pending = self._pending, {}
            self._changed.notify_all()
        return left

    def _start(self) -> None:
        # Called with `_changed` held.
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, name=f"mailreset-rq-watch-{self.queue.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        # Daemon thread: nothing is lost when the process exits without close(), since the jobs
        # are in Redis; only the Futures stop settling.
        while True:
            with self._changed:
                while not self._pending and not self._stop.is_set():
                    self._changed.wait()  # idle: asleep until watch() or stop()
                if self._stop.is_set():
                    return
                job_ids = list(self._pending)
            self._settle(job_ids)
            if self._stop.wait(self.poll_interval):
                return

    def _settle(self, job_ids: list[str]) -> None:
        try:
            settled = self._poll(job_ids)
        except (redis.exceptions.RedisError, OSError) as error:
            log.warning("RQMailer: cannot read job statuses from Redis (%s); retrying", error)
            return
        if not settled:
            return
        with self._changed:
            futures = [(self._pending.pop(job_id, None), result) for job_id, result in settled]
            self._changed.notify_all()
        for future, result in futures:
            if future is None:
                continue
            if isinstance(result, Delivery):
                future.set_result(result)
            else:
                future.set_exception(result)

    def _poll(self, job_ids: list[str]) -> list[tuple[str, Delivery | DeliveryError]]:
        with self.queue.connection.pipeline(transaction=False) as pipeline:
            for job_id in job_ids:
                pipeline.hmget(rq.job.Job.key_for(job_id), "status", "meta")
            replies = pipeline.execute()
        settled: list[tuple[str, Delivery | DeliveryError]] = []
        for job_id, (raw_status, raw_meta) in zip(job_ids, replies, strict=True):
            status = raw_status.decode() if raw_status is not None else None
            if status in _RUNNING and b"final" not in (raw_meta or b""):
                # Most polls find most jobs waiting: skip decoding a meta that holds no outcome.
                continue
            result = outcome(job_id, status, self._meta(raw_meta))
            if result is not None:
                settled.append((job_id, result))
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


# Every live watcher of this process, to give each fresh locks (and no thread) after a fork.
_live: weakref.WeakSet[Watcher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for watcher in list(_live):
        watcher._fresh_state()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
