"""The Delivery value object, apart so transports and mailers can both import it.

Public as :class:`mailreset.mailers.Delivery`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mailreset._convert import to_tuple

__all__ = ["Delivery"]


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
