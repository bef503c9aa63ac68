"""Getting messages to a transport off the request path: mailers and their value objects.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from email.message import EmailMessage
from typing import Protocol, runtime_checkable

import attrs

from mailreset._convert import to_tuple
from mailreset.errors import ConfigurationError

__all__ = ["Delivery", "Mailer", "Retry"]


def _frozen_mapping(value: Mapping[str, tuple[int, str]]) -> Mapping[str, tuple[int, str]]:
    return dict(value)


@attrs.frozen(kw_only=True)
class Delivery:
    """What the server said about one accepted message.

    Attributes:
        message_id: the Message-ID header, with its angle brackets.
        envelope_from: the SMTP ``MAIL FROM`` address.
        accepted: the recipients the server took.
        refused: recipients the server refused, as ``address -> (code, text)``.
        attempts: how many attempts it took (1 when the first one worked).
        elapsed: seconds from the first attempt to the server's acceptance.

    .. versionadded:: 0.1
    """

    message_id: str
    envelope_from: str
    accepted: tuple[str, ...] = attrs.field(converter=to_tuple)
    refused: Mapping[str, tuple[int, str]] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    attempts: int = 1
    elapsed: float = 0.0


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
