"""SyncMailer: sending in the caller's thread."""

from __future__ import annotations

import random
import time
from concurrent.futures import Future
from email.message import Message

from mailreset._clock import Clock, utc_now
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope, to_envelope
from mailreset.errors import ConfigurationError, DeliveryError, MailerClosed
from mailreset.mailers._protocol import OnFailure, check_on_failure, report
from mailreset.mailers._retry import Retry, Sleep, deliver
from mailreset.transports import SMTPSettings, SMTPTransport, Transport


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
        check_on_failure(on_failure)
        self.transport = transport
        self.retry = retry if retry is not None else Retry(attempts=1)
        self.on_failure = on_failure
        self._clock = clock or utc_now
        self._sleep = sleep or time.sleep
        self._closed = False

    def __repr__(self) -> str:
        return f"<SyncMailer {self.transport!r}>"

    def send(self, message: Message | Envelope) -> Future[Delivery]:
        """Deliver ``message`` now; return a done Future with the Delivery or the error.

        Raises :class:`TypeError` for anything but a Message or an Envelope,
        :class:`~mailreset.errors.InvalidMessage` for a message that must not be sent and
        :class:`~mailreset.errors.MailerClosed` after :meth:`close`.
        """
        if self._closed:
            raise MailerClosed("this SyncMailer is closed")
        envelope = to_envelope(message)
        future: Future[Delivery] = Future()
        try:
            delivery = deliver(
                self.transport,
                envelope,
                self.retry,
                clock=self._clock,
                sleep=self._sleep,
                jitter=random.random,
            )
        except DeliveryError as error:
            future.set_exception(error)
            report(
                self.on_failure,
                message if isinstance(message, Message) else None,
                envelope,
                error,
            )
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
