"""The Delivery value object, apart so transports and mailers can both import it.

Public as :class:`mailreset.mailers.Delivery`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from mailreset._convert import to_tuple

__all__ = ["Delivery", "delivery_from_record", "delivery_record"]


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
        maybe_duplicated: True when an earlier attempt's outcome was unknown (the connection
            broke after the final dot, before the reply) and a retry followed: the server may
            have taken the message twice.

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
    maybe_duplicated: bool = False


def delivery_record(
    delivery: Delivery, attempts: int, elapsed: float, maybe_duplicated: bool
) -> dict[str, Any]:
    """``delivery`` as JSON-ready plain data, as RQ and Celery workers hand it back."""
    return {
        "message_id": delivery.message_id,
        "envelope_from": delivery.envelope_from,
        "accepted": list(delivery.accepted),
        "refused": {address: list(reply) for address, reply in delivery.refused.items()},
        "attempts": attempts,
        "elapsed": elapsed,
        "maybe_duplicated": maybe_duplicated or delivery.maybe_duplicated,
    }


def delivery_from_record(record: Mapping[str, Any]) -> Delivery:
    """The :class:`Delivery` a :func:`delivery_record` describes."""
    return Delivery(
        message_id=str(record["message_id"]),
        envelope_from=str(record["envelope_from"]),
        accepted=tuple(record.get("accepted") or ()),
        refused={
            address: (int(code), str(text))
            for address, (code, text) in (record.get("refused") or {}).items()
        },
        attempts=int(record.get("attempts", 1)),
        elapsed=float(record.get("elapsed", 0.0)),
        maybe_duplicated=bool(record.get("maybe_duplicated", False)),
    )
