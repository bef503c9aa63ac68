"""Raw bytes to :class:`CapturedMessage`: what every capture (fixture, outbox, sink) stores.

A capture keeps the bytes it was given and parses them only when a field is read, so that
recording a message costs no more than appending to a list (the sink must keep pace with
aiosmtpd's own ``Sink`` handler).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage, Message
from functools import cached_property
from typing import Any, cast
from urllib.parse import unquote

import attrs

from mailreset._clock import utc_now
from mailreset._convert import to_tuple
from mailreset._envelope import message_from_wire
from mailreset.testing._links import links_in
from mailreset.transports import Envelope

__all__ = ["CapturedMessage", "extract_links", "extract_token"]


@attrs.frozen(kw_only=True)
class CapturedMessage:
    """One message as a capture received it, parsed lazily.

    Safe to read from any thread; it is immutable.

    Attributes:
        raw: the message bytes exactly as received (or as serialised, for the outbox).
        envelope_from: the SMTP ``MAIL FROM`` address (the sender, for the outbox).
        envelope_to: the SMTP ``RCPT TO`` addresses, Bcc included.
        received_at: when the capture got it (aware UTC).

    .. versionadded:: 0.1
    """

    raw: bytes = attrs.field(repr=False)
    envelope_from: str
    envelope_to: tuple[str, ...] = attrs.field(converter=to_tuple)
    received_at: datetime = attrs.field(factory=utc_now, eq=False)

    @classmethod
    def from_bytes(
        cls,
        raw: bytes,
        *,
        envelope_from: str | None = None,
        envelope_to: Iterable[str] | None = None,
        received_at: datetime | None = None,
    ) -> CapturedMessage:
        """Capture raw message bytes; a missing envelope is read from the headers."""
        if envelope_from is None or envelope_to is None:
            headers = message_from_wire(raw)
            if envelope_from is None:
                envelope_from = next(iter(_addresses(headers, "Sender", "From")), "")
            if envelope_to is None:
                envelope_to = _addresses(headers, "To", "Cc", "Bcc")
        return cls(
            raw=raw,
            envelope_from=envelope_from,
            envelope_to=tuple(envelope_to),
            received_at=received_at or utc_now(),
        )

    @classmethod
    def from_envelope(
        cls, envelope: Envelope, *, received_at: datetime | None = None
    ) -> CapturedMessage:
        """Capture what a transport was given: the envelope's bytes, sender and recipients."""
        return cls(
            raw=envelope.data,
            envelope_from=envelope.sender,
            envelope_to=envelope.recipients,
            received_at=received_at or utc_now(),
        )

    @classmethod
    def from_message(
        cls,
        message: Message,
        *,
        envelope_from: str | None = None,
        envelope_to: Iterable[str] | None = None,
    ) -> CapturedMessage:
        """Capture a copy of ``message`` by serialising it, as a transport would."""
        return cls.from_bytes(
            message.as_bytes(policy=email.policy.SMTP),
            envelope_from=envelope_from,
            envelope_to=envelope_to,
        )

    @cached_property
    def message(self) -> EmailMessage:
        """The parsed message (``email.policy.default``)."""
        return message_from_wire(self.raw)

    @property
    def subject(self) -> str:
        """The decoded Subject header, or ``""``."""
        return str(self.message.get("Subject", ""))

    @property
    def from_(self) -> str:
        """The decoded From header, or ``""``."""
        return str(self.message.get("From", ""))

    @property
    def to(self) -> tuple[str, ...]:
        """The addresses in the To header."""
        return tuple(_addresses(self.message, "To"))

    @property
    def message_id(self) -> str:
        """The Message-ID header, angle brackets included, or ``""``."""
        return str(self.message.get("Message-ID", "")).strip()

    @cached_property
    def text(self) -> str:
        """The text/plain body with ``\\n`` line ends (not SMTP's CRLF), or ``""``."""
        return _body(self.message, "plain")

    @cached_property
    def html(self) -> str:
        """The text/html body with ``\\n`` line ends (not SMTP's CRLF), or ``""``."""
        return _body(self.message, "html")

    @cached_property
    def links(self) -> tuple[str, ...]:
        """Every http(s) link in the HTML and the text part, first seen first, no repeats."""
        return _links(self.html, self.text)

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Every header as ``(name, decoded value)``, in order."""
        return tuple((name, str(value)) for name, value in self.message.items())

    @property
    def size(self) -> int:
        """Size of the raw message in bytes."""
        return len(self.raw)

    def attachments(self) -> list[tuple[str, str, bytes]]:
        """The attachments as ``(filename, content type, payload bytes)``."""
        found = []
        for part in self.message.iter_attachments():
            payload = part.get_payload(decode=True)
            found.append(
                (
                    part.get_filename() or "",
                    part.get_content_type(),
                    payload if isinstance(payload, bytes) else b"",
                )
            )
        return found


def _addresses(message: Message, *names: str) -> list[str]:
    found: list[str] = []
    for name in names:
        for header in message.get_all(name, []):
            found.extend(
                address.addr_spec for address in getattr(header, "addresses", ()) if address
            )
    return found


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    content: Any = part.get_content()
    if not isinstance(content, str):
        return ""
    # Mail on the wire has CRLF line ends; tests compare with Python strings, which have \n.
    return content.replace("\r\n", "\n").replace("\r", "\n")


def _links(html: str, text: str) -> tuple[str, ...]:
    return links_in((("html", html), ("plain", text)))


def extract_links(message: EmailMessage | CapturedMessage | Message) -> tuple[str, ...]:
    """Every http(s) link in ``message``'s HTML and text parts, first seen first.

    Works on a built :class:`~email.message.EmailMessage` and a :class:`CapturedMessage`.

    .. versionadded:: 0.1
    """
    if isinstance(message, CapturedMessage):
        return message.links
    parsed = cast(EmailMessage, message)
    if not isinstance(message, EmailMessage):
        parsed = CapturedMessage.from_message(message, envelope_from="", envelope_to=()).message
    return _links(_body(parsed, "html"), _body(parsed, "plain"))


def extract_token(message: EmailMessage | CapturedMessage | Message, prefix: str) -> str:
    """The token in the first link that starts with ``prefix``.

    The token is what follows the prefix up to a ``/``, ``?`` or ``#``, percent-decoded.
    Raises :class:`AssertionError` listing the links found when none matches, so a failing
    test says what the message did contain.

    .. versionadded:: 0.1
    """
    links = extract_links(message)
    for link in links:
        if link.startswith(prefix):
            token = re.split(r"[/?#&]", link[len(prefix) :], maxsplit=1)[0]
            if token:
                return unquote(token)
    raise AssertionError(f"no link starting with {prefix!r} in the message; links: {links!r}")
