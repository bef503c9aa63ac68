"""The in-memory mailer behind ``mail_outbox``: validates like a transport, records copies.

It needs nothing but the standard library and attrs, so ``mail_outbox`` works without the
``testing`` extra (aiosmtpd).
"""

from __future__ import annotations

import copy
import email.errors
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from email.message import Message
from email.utils import getaddresses
from re import Pattern

from mailreset._clock import Clock, utc_now
from mailreset.errors import InvalidMessage, MailerClosed
from mailreset.mailers import Delivery
from mailreset.testing._capture import CapturedMessage

__all__ = ["Outbox"]

# A line break followed by a space or tab continues a folded header; any other CR or LF
# would start a new header line (header injection).
_FOLD = re.compile(r"\r?\n[ \t]")


class Outbox:
    """A :class:`~mailreset.mailers.Mailer` that records what it is given, for tests.

    ``send`` checks a message as a transport would (it must serialise, have a sender and at
    least one recipient, and carry no CR or LF in a header) and raises
    :class:`~mailreset.errors.InvalidMessage` otherwise; then it records a
    :class:`~mailreset.testing.CapturedMessage` *copy* (later changes to the message do not
    show) and returns a done Future of :class:`~mailreset.mailers.Delivery`. The envelope is
    what SMTP would use: the sender is the Sender or From address, the recipients are To, Cc
    and Bcc, and Bcc is left out of the recorded bytes.

    Thread-safe: mail sent by :class:`~mailreset.mailers.ThreadedMailer` workers or any
    other thread is recorded like mail sent inline; use :meth:`wait_for` to wait for it.
    ``clock`` stamps ``received_at`` (a callable returning an aware UTC datetime).

    .. versionadded:: 0.1
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or utc_now
        self._messages: list[CapturedMessage] = []
        self._changed = threading.Condition()
        self._closed = False

    # -- the Mailer protocol --------------------------------------------------------------

    def send(self, message: Message) -> Future[Delivery]:
        """Validate and record a copy of ``message``; return a done Future of its Delivery.

        Raises :class:`~mailreset.errors.InvalidMessage` for a message no transport would
        send, and :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        captured = self._capture(message)
        with self._changed:
            if self._closed:
                raise MailerClosed("send() on a closed Outbox")
            self._messages.append(captured)
            self._changed.notify_all()
        future: Future[Delivery] = Future()
        future.set_result(
            Delivery(
                message_id=str(message.get("Message-ID", "")).strip(),
                envelope_from=captured.envelope_from,
                accepted=captured.envelope_to,
            )
        )
        return future

    def close(self) -> None:
        """Refuse further messages; what was recorded stays readable."""
        with self._changed:
            self._closed = True

    # -- reading what was sent ------------------------------------------------------------

    @property
    def messages(self) -> list[CapturedMessage]:
        """A snapshot of the recorded messages, oldest first."""
        with self._changed:
            return list(self._messages)

    def __len__(self) -> int:
        with self._changed:
            return len(self._messages)

    def __iter__(self) -> Iterator[CapturedMessage]:
        return iter(self.messages)

    def __bool__(self) -> bool:
        # An empty outbox is still an outbox: ``if outbox:`` must not hide the object.
        return True

    @property
    def last(self) -> CapturedMessage:
        """The most recent message; an :class:`AssertionError` when nothing was sent."""
        __tracebackhide__ = True
        with self._changed:
            if not self._messages:
                raise AssertionError("no message was sent: the outbox is empty")
            return self._messages[-1]

    def find(
        self, *, to: str | None = None, subject: str | Pattern[str] | None = None
    ) -> list[CapturedMessage]:
        """The messages sent to ``to`` (any envelope recipient, Bcc included, any case) and
        with ``subject`` (an exact string, or a compiled pattern searched for), oldest first.
        """
        return [message for message in self.messages if _matches(message, to, subject)]

    def clear(self) -> None:
        """Forget every recorded message."""
        with self._changed:
            self._messages.clear()

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages were recorded; return them all.

        For mail sent from other threads. Raises :class:`TimeoutError` listing what did
        arrive when ``timeout`` seconds pass.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) within {timeout}s, "
                        f"got {len(self._messages)}" + _listing(self._messages)
                    )
                self._changed.wait(left)
            return list(self._messages)

    # -- assertions -----------------------------------------------------------------------

    def assert_sent(
        self,
        *,
        to: str | None = None,
        subject: str | Pattern[str] | None = None,
        count: int | None = None,
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

    def assert_not_sent(
        self, *, to: str | None = None, subject: str | Pattern[str] | None = None
    ) -> None:
        """Assert no message matching ``to``/``subject`` was sent (no filter: none at all)."""
        __tracebackhide__ = True
        sent = self.messages
        found = [message for message in sent if _matches(message, to, subject)]
        if found:
            raise AssertionError(
                f"expected no message{_criteria(to, subject)}, found {len(found)}; "
                f"{len(sent)} message(s) were sent" + _listing(sent)
            )

    def __repr__(self) -> str:
        return f"<Outbox messages={len(self)}>"

    # -- validation -----------------------------------------------------------------------

    def _capture(self, message: Message) -> CapturedMessage:
        if not isinstance(message, Message):
            raise InvalidMessage(
                f"expected an email.message.EmailMessage, not {type(message).__name__}"
            )
        for name, value in message.items():
            if "\r" in name or "\n" in name or re.search(r"[\r\n]", _FOLD.sub(" ", str(value))):
                raise InvalidMessage(f"the {name!r} header contains a line break (CR or LF)")
        try:
            senders = _addresses(message, "Sender") or _addresses(message, "From")
            recipients = _addresses(message, "To", "Cc", "Bcc")
        except (ValueError, TypeError, IndexError, email.errors.MessageError) as error:
            raise InvalidMessage(f"an address header cannot be parsed: {error}") from error
        if not senders:
            raise InvalidMessage("the message has no sender: set its From header")
        if not recipients:
            raise InvalidMessage("the message has no recipients: set To, Cc or Bcc")
        for address in (senders[0], *recipients):
            if "@" not in address or any(character.isspace() for character in address):
                raise InvalidMessage(f"{address!r} is not an email address")
        return CapturedMessage.from_bytes(
            _wire_bytes(message),
            envelope_from=senders[0],
            envelope_to=recipients,
            received_at=self._clock(),
        )


def _wire_bytes(message: Message) -> bytes:
    # Serialise a copy without Bcc, exactly as a transport puts it on the wire.
    wire = copy.deepcopy(message)
    del wire["Bcc"]
    try:
        try:
            return wire.as_bytes(policy=email.policy.SMTP)
        except UnicodeError:
            # Non-ASCII addresses need SMTPUTF8, as a transport would negotiate.
            return wire.as_bytes(policy=email.policy.SMTPUTF8)
    except (ValueError, TypeError, LookupError, email.errors.MessageError) as error:
        raise InvalidMessage(f"the message cannot be serialised: {error}") from error


def _addresses(message: Message, *names: str) -> list[str]:
    values = [str(value) for name in names for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


def _matches(message: CapturedMessage, to: str | None, subject: str | Pattern[str] | None) -> bool:
    if to is not None and to.lower() not in {address.lower() for address in message.envelope_to}:
        return False
    if subject is None:
        return True
    if isinstance(subject, str):
        return subject == message.subject
    return subject.search(message.subject) is not None


def _criteria(to: str | None, subject: str | Pattern[str] | None) -> str:
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
