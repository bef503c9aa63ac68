"""The in-memory mailer behind ``mail_outbox``: validates like a transport, records copies.

It needs nothing but the standard library and attrs, so ``mail_outbox`` works without the
``testing`` extra (aiosmtpd).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from email.message import Message

from mailreset._clock import Clock, utc_now
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope, to_envelope
from mailreset.errors import MailerClosed
from mailreset.testing._capture import CapturedMessage
from mailreset.testing._store import CaptureStore

__all__ = ["Outbox"]


class Outbox(CaptureStore):
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
        super().__init__()
        self._clock = clock or utc_now
        self._closing = threading.Lock()
        self._closed = False

    # -- the Mailer protocol --------------------------------------------------------------

    def send(self, message: Message | Envelope) -> Future[Delivery]:
        """Validate and record a copy of ``message``; return a done Future of its Delivery.

        Raises :class:`TypeError` for anything but a Message or an Envelope,
        :class:`~mailreset.errors.InvalidMessage` for a message no transport would send, and
        :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        captured = self._capture(message)
        with self._closing:
            if self._closed:
                raise MailerClosed("send() on a closed Outbox")
            self.add(captured)
        future: Future[Delivery] = Future()
        future.set_result(
            Delivery(
                message_id=captured.message_id,
                envelope_from=captured.envelope_from,
                accepted=captured.envelope_to,
            )
        )
        return future

    def close(self) -> None:
        """Refuse further messages; what was recorded stays readable."""
        with self._closing:
            self._closed = True

    def __repr__(self) -> str:
        return f"<Outbox messages={len(self)}>"

    # -- validation -----------------------------------------------------------------------

    def _capture(self, message: Message | Envelope) -> CapturedMessage:
        # The transports' own check and serialisation: what passes here passes there.
        return CapturedMessage.from_envelope(to_envelope(message), received_at=self._clock())
