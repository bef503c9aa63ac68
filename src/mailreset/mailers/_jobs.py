"""A queued message and how it ends: its Future, its spool file, and ``on_failure``."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from email.message import Message
from pathlib import Path
from typing import Any

from mailreset._delivery import Delivery
from mailreset._envelope import Envelope
from mailreset.errors import PermanentFailure
from mailreset.mailers._protocol import OnFailure, report
from mailreset.spool import Spool

log = logging.getLogger("mailreset")

#: Put on the queue to tell one worker to stop.
STOP: Any = object()


class Job:
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

    def start(self) -> bool:
        """Set the Future running once; False when the caller had cancelled it."""
        if self.running:
            return True
        self.running = True
        return self.future.set_running_or_notify_cancel()


def unexpected(error: BaseException) -> PermanentFailure:
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


class Endings:
    """Ends jobs exactly once: the Future, the spool file, and ``on_failure`` for failures."""

    def __init__(self, spool: Spool | None, on_failure: OnFailure | None) -> None:
        self.spool = spool
        self.on_failure = on_failure

    def forget(self, job: Job) -> None:
        """Remove ``job``'s spool file: it was delivered, or its caller cancelled it."""
        if job.path is not None and self.spool is not None:
            try:
                self.spool.remove(job.path)
            except OSError as error:
                log.warning("could not remove spool file %s: %s", job.path.name, error)

    def succeed(self, job: Job, delivery: Delivery) -> None:
        """End ``job`` with ``delivery``."""
        self.forget(job)
        if not job.future.done():
            job.future.set_result(delivery)

    def fail(self, job: Job, error: BaseException, *, keep: bool) -> None:
        """End ``job`` with ``error``; ``keep`` leaves its spool file in place."""
        if job.path is not None and self.spool is not None and not keep:
            try:
                self.spool.set_aside(job.path)
            except Exception as spool_error:
                log.warning("could not set spool file %s aside: %s", job.path, spool_error)
        if job.future.done() or not job.start():
            return
        # on_failure first: once a Future is done, its callback has been told as well.
        try:
            report(self.on_failure, job.message, job.envelope, error)
        finally:
            job.future.set_exception(error)
