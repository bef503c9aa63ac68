"""Retrying temporary failures: the :class:`Retry` policy and the loop that follows it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import attrs

from mailreset._clock import Clock
from mailreset._convert import non_negative_seconds, positive_int
from mailreset._delivery import Delivery
from mailreset._envelope import Envelope
from mailreset._redact import redact
from mailreset.errors import ConfigurationError, DeliveryError, TemporaryFailure
from mailreset.transports import Transport

log = logging.getLogger("mailreset")

#: How a backoff waits (``time.sleep``; tests pass a fake).
Sleep = Callable[[float], None]


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

    # The defaults ride out what real servers do: a restart or failover of two minutes, a
    # minute of 4xx rate limiting. Backoff ceilings 0.5, 1, 2 ... 16, then 20 s; the deadline
    # (10 minutes) ends it, not the attempt count.
    attempts: int = attrs.field(default=60, validator=positive_int)
    initial: float = attrs.field(default=0.5, validator=non_negative_seconds)
    maximum: float = attrs.field(default=20.0, validator=non_negative_seconds)
    deadline: float = attrs.field(default=600.0, validator=non_negative_seconds)

    def ceiling(self, retry_number: int) -> float:
        """The backoff ceiling before retry number ``retry_number`` (1-based)."""
        return float(min(self.maximum, self.initial * 2 ** (retry_number - 1)))


def _elapsed(clock: Clock, started: datetime) -> float:
    return (clock() - started).total_seconds()


class GiveBack(Exception):
    """Raised by :func:`deliver` when ``give_back`` wants the message back on the queue."""

    def __init__(self, error: TemporaryFailure) -> None:
        super().__init__(str(error))
        self.error = error


def deliver(
    transport: Transport,
    envelope: Envelope,
    retry: Retry,
    *,
    clock: Clock,
    sleep: Sleep,
    jitter: Callable[[], float],
    give_back: Callable[[TemporaryFailure], bool] | None = None,
) -> Delivery:
    """Send ``envelope``, retrying temporary failures as ``retry`` says; raise the final error.

    Every transport gets the same call, ``transport.send(envelope)``. When an attempt's
    outcome was unknown (``maybe_delivered``), the Delivery says ``maybe_duplicated`` and a
    final error keeps ``maybe_delivered``: an error never claims "not accepted" wrongly.
    When ``give_back(error)`` says True after the first attempt's temporary failure,
    :class:`GiveBack` is raised instead of retrying (the message was not tried, in effect).
    """
    started = clock()
    attempt = 0
    maybe = False
    while True:
        attempt += 1
        try:
            delivery = transport.send(envelope)
        except DeliveryError as error:
            maybe = maybe or error.maybe_delivered
            error.maybe_delivered = maybe
            if not isinstance(error, TemporaryFailure):
                raise
            if attempt == 1 and not maybe and give_back is not None and give_back(error):
                raise GiveBack(error) from error
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
        return attrs.evolve(
            delivery,
            attempts=attempt,
            elapsed=_elapsed(clock, started),
            maybe_duplicated=maybe or delivery.maybe_duplicated,
        )


def retry_setting(instance: object, attribute: attrs.Attribute[Retry], value: Retry) -> None:
    """attrs validator: a :class:`Retry`, named on error (``RQMailer.retry``, ...)."""
    if not isinstance(value, Retry):
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name} must be a mailreset.Retry, "
            f"not {type(value).__name__}"
        )
