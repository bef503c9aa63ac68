"""The thread-safe list of captured messages behind every capture, with its assertions.

``smtp_sink`` (through :class:`~mailreset.testing.SMTPSink`), ``mail_outbox``
(:class:`~mailreset.testing.Outbox`) and the debug sink all record into one of these, so they
read, wait and assert the same way. Standard library only: no aiosmtpd needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from re import Pattern

from mailreset.testing._capture import CapturedMessage

__all__ = ["CaptureStore"]

SubjectFilter = str | Pattern[str] | None


class CaptureStore:
    """A thread-safe list of captured messages that other threads can wait on.

    Every method may be called from any thread: mail recorded by server or mailer worker
    threads shows up for the test thread, and :meth:`wait_for` waits for it without polling.
    ``on_message`` callbacks run in the recording thread after a message is stored (the debug
    sink prints and saves from there).

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._messages: list[CapturedMessage] = []
        self._changed = threading.Condition()
        #: Callbacks run with each message after it is stored.
        self.on_message: list[Callable[[CapturedMessage], None]] = []

    def add(self, message: CapturedMessage) -> None:
        """Store ``message`` and wake every waiter."""
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        for callback in self.on_message:
            callback(message)

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the captured messages, oldest first."""
        with self._changed:
            return list(self._messages)

    def __len__(self) -> int:
        with self._changed:
            return len(self._messages)

    def __iter__(self) -> Iterator[CapturedMessage]:
        return iter(self.messages)

    def __bool__(self) -> bool:
        # An empty capture is still a capture: ``if outbox:`` must not hide the object.
        return True

    @property
    def last(self) -> CapturedMessage:
        """The most recent message; an :class:`AssertionError` when nothing was captured."""
        __tracebackhide__ = True
        with self._changed:
            if not self._messages:
                raise AssertionError("no message was sent: nothing was captured")
            return self._messages[-1]

    def find(
        self, *, to: str | None = None, subject: SubjectFilter = None
    ) -> list[CapturedMessage]:
        """The messages sent to ``to`` (any envelope recipient, Bcc included, any case) and
        with ``subject`` (an exact string, or a compiled pattern searched for), oldest first.
        """
        return [message for message in self.messages if _matches(message, to, subject)]

    def clear(self) -> None:
        """Forget every captured message."""
        with self._changed:
            self._messages.clear()

    def remove(self, predicate: Callable[[CapturedMessage], bool]) -> int:
        """Forget the messages ``predicate`` selects; return how many went."""
        with self._changed:
            kept = [message for message in self._messages if not predicate(message)]
            removed = len(self._messages) - len(kept)
            self._messages[:] = kept
        return removed

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages are here; return them all.

        For mail sent from other threads. Raises :class:`TimeoutError` listing what did
        arrive when ``timeout`` seconds pass.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, "
                    f"got {len(self._messages)}" + _listing(self._messages)
                )
            return list(self._messages)

    def assert_sent(
        self, *, to: str | None = None, subject: SubjectFilter = None, count: int | None = None
    ) -> CapturedMessage:
        """Assert a message matching ``to``/``subject`` (as in :meth:`find`) was sent.

        With ``count``, exactly that many must match. Returns the last match. On failure the
        :class:`AssertionError` lists every message that was sent, so the test output shows
        what went out instead.
        """
        __tracebackhide__ = True  # pytest shows the failing test's line, not this one
        sent = self.messages
        found = [message for message in sent if _matches(message, to, subject)]
        expected = "a message" if count is None else f"{count} message(s)"
        if not found or (count is not None and len(found) != count):
            raise AssertionError(
                f"expected {expected}{_criteria(to, subject)}, found {len(found)}; "
                f"{len(sent)} message(s) were sent" + _listing(sent)
            )
        return found[-1]

    def assert_not_sent(self, *, to: str | None = None, subject: SubjectFilter = None) -> None:
        """Assert no message matching ``to``/``subject`` was sent (no filter: none at all)."""
        __tracebackhide__ = True
        sent = self.messages
        found = [message for message in sent if _matches(message, to, subject)]
        if found:
            raise AssertionError(
                f"expected no message{_criteria(to, subject)}, found {len(found)}; "
                f"{len(sent)} message(s) were sent" + _listing(sent)
            )


def _matches(message: CapturedMessage, to: str | None, subject: SubjectFilter) -> bool:
    if to is not None and to.lower() not in {address.lower() for address in message.envelope_to}:
        return False
    if subject is None:
        return True
    if isinstance(subject, str):
        return subject == message.subject
    return subject.search(message.subject) is not None


def _criteria(to: str | None, subject: SubjectFilter) -> str:
    parts = []
    if to is not None:
        parts.append(f"to={to!r}")
    if subject is not None:
        parts.append(
            f"subject~{subject.pattern!r}"
            if isinstance(subject, Pattern)
            else f"subject={subject!r}"
        )
    return f" with {' '.join(parts)}" if parts else ""


def _listing(messages: list[CapturedMessage]) -> str:
    if not messages:
        return ""
    lines = [":"]
    lines.extend(
        f"  {index}. from={message.envelope_from!r} to={list(message.envelope_to)} "
        f"subject={message.subject!r}"
        for index, message in enumerate(messages, 1)
    )
    return "\n".join(lines)
