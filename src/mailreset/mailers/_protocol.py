"""The Mailer protocol, and how a message that finally failed is reported."""

from __future__ import annotations

import email
import email.policy
import email.utils
import logging
from collections.abc import Callable
from concurrent.futures import Future
from email.message import EmailMessage, Message
from typing import Protocol, runtime_checkable

from mailreset._delivery import Delivery
from mailreset._envelope import Envelope
from mailreset._redact import redact
from mailreset.errors import ConfigurationError

log = logging.getLogger("mailreset")

#: ``on_failure(message, error)``: told about every message that finally failed.
OnFailure = Callable[[Message, BaseException], None]


@runtime_checkable
class Mailer(Protocol):
    """**Protocol:** something that accepts messages for delivery.

    ``send`` takes an :class:`email.message.Message` (EmailMessage included) or an
    :class:`~mailreset.transports.Envelope`; anything else raises :class:`TypeError` and an
    invalid message raises :class:`~mailreset.errors.InvalidMessage`, in the caller's
    thread, before anything is queued. It returns at once with a
    :class:`~concurrent.futures.Future` that ends in a :class:`Delivery` or in the
    :class:`~mailreset.errors.DeliveryError` that stopped it.

    .. versionadded:: 0.1
    """

    def send(self, message: Message | Envelope) -> Future[Delivery]:
        """Accept ``message`` for delivery; the Future tells how it went."""
        ...

    def close(self) -> None:
        """Deliver what was accepted, then release every resource."""
        ...


def message_of(envelope: Envelope) -> EmailMessage:
    """A message back from an envelope's bytes, hidden recipients restored as a Bcc header.

    Only for telling ``on_failure`` about an envelope that came without a message (given as
    an Envelope, or replayed from the spool); never on the sending path.
    """
    message = email.message_from_bytes(envelope.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default always makes one
    shown = {
        address.lower()
        for _, address in email.utils.getaddresses(
            [str(value) for name in ("To", "Cc") for value in message.get_all(name, ())]
        )
    }
    hidden = [address for address in envelope.recipients if address.lower() not in shown]
    if hidden:
        message["Bcc"] = ", ".join(hidden)
    return message


def report(
    on_failure: OnFailure | None,
    message: Message | None,
    envelope: Envelope,
    error: BaseException,
) -> None:
    """Log a final failure and tell ``on_failure`` (whose own errors are logged, not raised)."""
    log.warning("message %s not delivered: %s", envelope.message_id or "?", redact(str(error)))
    if on_failure is None:
        return
    try:
        on_failure(message if message is not None else message_of(envelope), error)
    except Exception:
        log.exception("on_failure raised; the failure it was told about is logged above")


def check_on_failure(on_failure: object) -> None:
    """Raise ConfigurationError unless ``on_failure`` is None or a callable."""
    if on_failure is not None and not callable(on_failure):
        raise ConfigurationError(
            f"on_failure must be a callable (message, error), not {on_failure!r}"
        )
