"""The checked, serialised form of a message: :class:`Envelope`, made in one place.

Every mailer, transport, the spool, RQ and the test outbox go through
:meth:`Envelope.from_message`, so they check the same way: a sender, at least one recipient,
no CR/LF in a header or an address, Bcc in the envelope and never on the wire. An envelope
made any other way (read back from the spool or a queue, or built by hand) passes the same
field checks.

Public as :class:`mailreset.transports.Envelope`.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import io
import re
import secrets
import sys
from email import headerregistry
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from typing import Any

import attrs

from mailreset._addresses import canonical_address
from mailreset._convert import to_tuple
from mailreset.errors import InvalidMessage

__all__ = ["Envelope"]

_PARSED_ADDRESSES = headerregistry.AddressHeader

#: Headers that never reach the wire: they only add envelope recipients.
_HIDDEN = ("Bcc", "Resent-Bcc")


def addresses(message: Message, *names: str) -> list[str]:
    """The addr-specs in the ``names`` headers of ``message``; CR/LF raises InvalidMessage."""
    headers: list[Any] = []
    for name in names:
        headers.extend(message.get_all(name, ()))
    if all(
        isinstance(value, _PARSED_ADDRESSES) and not getattr(value, "defects", True)
        for value in headers
    ):
        # policy.default parsed these when they were set, without a defect: their addresses
        # are what getaddresses() would find in their text again (and they hold no CR/LF).
        return [address.addr_spec for value in headers for address in value.addresses if address]
    values = [str(value) for value in headers]
    if any("\r" in value or "\n" in value for value in values):
        raise InvalidMessage(f"a CR or LF in the {'/'.join(names)} header")
    return [address for _, address in email.utils.getaddresses(values) if address]


def envelope(message: Message) -> tuple[str, tuple[str, ...]]:
    """The ``(sender, recipients)`` SMTP envelope of ``message``.

    The sender is the Sender address, else the From address (as
    :meth:`smtplib.SMTP.send_message` picks it); the recipients are the To, Cc and Bcc
    addresses, deduplicated case-insensitively, in that order (as in
    :meth:`Envelope.from_message`, which calls this).

    Raises :class:`~mailreset.errors.InvalidMessage` when there is no sender or no recipient.

    .. versionadded:: 0.1
    """
    prefix = "Resent-" if message.get("Resent-Date") is not None else ""
    senders = addresses(message, f"{prefix}Sender") or addresses(message, f"{prefix}From")
    if not senders:
        raise InvalidMessage("the message has no From (or Sender) address to send it from")
    recipients: dict[str, str] = {}
    for address in addresses(message, f"{prefix}To", f"{prefix}Cc", f"{prefix}Bcc"):
        recipients.setdefault(address.lower(), address)
    if not recipients:
        raise InvalidMessage("the message has no recipient: set To, Cc or Bcc")
    # Unicode domains as A-labels: only a non-ASCII local part then needs SMTPUTF8.
    sender = _canonical(senders[0])
    return sender, tuple(_canonical(address) for address in recipients.values())


def _canonical(address: object) -> str:
    """``address`` checked by the one address check, its domain in A-labels."""
    try:
        return canonical_address(address, "the envelope address")
    except InvalidMessage as error:
        raise InvalidMessage(f"not an e-mail address: {error}") from None


def _check_address(address: object) -> None:
    """Raise InvalidMessage unless ``address`` can go into ``MAIL FROM``/``RCPT TO``."""
    _canonical(address)


def _check_sender(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _check_address(value)


def _check_recipients(
    instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    if not value:
        raise InvalidMessage("the message has no recipient: set To, Cc or Bcc")
    for address in value:
        _check_address(address)


def _check_data(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or not value:
        raise InvalidMessage(f"Envelope.data must be the message's bytes, not {value!r:.40}")


def _check_message_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value is not None and (not isinstance(value, str) or _LINE_BREAK.search(value)):
        raise InvalidMessage(f"Envelope.message_id is not a Message-ID: {value!r}")


def _needs_smtputf8(envelope: Envelope) -> bool:
    # Runs before the validators: a field that is not a string is refused by them, not here.
    return any(
        isinstance(address, str) and not address.isascii()
        for address in (envelope.sender, *envelope.recipients)
    )


def _check_smtputf8(instance: Envelope, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not value and _needs_smtputf8(instance):
        raise InvalidMessage("a non-ASCII address needs Envelope.smtputf8=True")


def _to_recipients(values: Any) -> tuple[str, ...]:
    # A lone string would otherwise become a tuple of its characters.
    return (values,) if isinstance(values, str) else to_tuple(values)


@attrs.frozen(kw_only=True)
class Envelope:
    """A message ready for delivery: its SMTP envelope and its bytes as on the wire.

    Make one with :meth:`from_message` (the one place where a message is checked and
    serialised); mailers accept either a message or an envelope. Every envelope, however it
    was made (by hand, or read back from the spool or a queue), passes the same checks: a
    sender and at least one recipient that are e-mail addresses, bytes to send, and
    ``smtputf8`` whenever an address needs it. A :class:`~mailreset.transports.Transport`
    gets exactly these bytes and recipients.

    Attributes:
        sender: the ``MAIL FROM`` address.
        recipients: the ``RCPT TO`` addresses (To, Cc, Bcc; deduplicated, in that order).
        data: the message as it goes on the wire: CRLF line ends, no Bcc header, not yet
            dot-stuffed.
        message_id: the Message-ID header with its angle brackets, or None when there is
            none.
        smtputf8: True when an address needs the SMTPUTF8 extension (worked out from the
            addresses when not given).

    Raises:
        InvalidMessage: for a field that must not be sent.

    .. versionadded:: 0.1
    """

    sender: str = attrs.field(validator=_check_sender)
    recipients: tuple[str, ...] = attrs.field(
        converter=_to_recipients, validator=_check_recipients
    )
    data: bytes = attrs.field(repr=False, validator=_check_data)
    message_id: str | None = attrs.field(default=None, validator=_check_message_id)
    smtputf8: bool = attrs.field(
        default=attrs.Factory(_needs_smtputf8, takes_self=True), validator=_check_smtputf8
    )

    @classmethod
    def from_message(cls, message: Message) -> Envelope:
        """Check ``message`` and serialise it once for delivery (CRLF, no Bcc).

        The sender is the Sender address, else the From address (as
        :meth:`smtplib.SMTP.send_message` picks it); the recipients are To, Cc and Bcc.
        The message itself is not changed.

        Raises:
            TypeError: ``message`` is not an :class:`email.message.Message`.
            InvalidMessage: a message that must not be sent (a line break in a header, no
                sender, no recipient, an address that is not one, bytes that cannot be made).
        """
        if not isinstance(message, Message):
            raise TypeError(
                "expected an email.message.Message (or EmailMessage) or an Envelope, "
                f"not {type(message).__name__}"
            )
        check_header_lines(message)
        sender, recipients = envelope(message)
        smtputf8 = not all(address.isascii() for address in (sender, *recipients))
        if any(name in message for name in _HIDDEN):
            # As smtplib.send_message does: a shallow copy, since __delitem__ rebinds the
            # header list instead of mutating the caller's.
            message = copy.copy(message)
            for name in _HIDDEN:
                del message[name]
        data = _serialise(message, smtputf8)
        message_id = str(message.get("Message-ID", "")).strip() or None
        return cls(
            sender=sender,
            recipients=recipients,
            data=data,
            message_id=message_id,
            smtputf8=smtputf8,
        )


_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


def message_from_wire(data: bytes) -> EmailMessage:
    """``data`` parsed with ``policy.default``; UTF-8 headers (SMTPUTF8, RFC 6532) read right.

    The bytes parser reads every header as ASCII (non-ASCII bytes become surrogates), so a
    message whose headers are UTF-8 is parsed from its text instead; only then, because the
    text parser would not give an 8bit body back as its bytes.
    """
    end = _END_OF_HEADERS.search(data)
    head = data if end is None else data[: end.start()]
    if not head.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return email.message_from_string(text, policy=email_policy.default)
    return email.message_from_bytes(data, policy=email_policy.default)


def to_envelope(message: Message | Envelope) -> Envelope:
    """``message`` as an :class:`Envelope`: what every mailer's ``send`` calls first.

    Raises TypeError for anything but a Message or an Envelope, InvalidMessage for a
    message that must not be sent.
    """
    if isinstance(message, Envelope):
        return message
    return Envelope.from_message(message)


def require_envelope(transport: object, envelope: object) -> None:
    """Raise TypeError unless a transport's ``send`` was given an :class:`Envelope`."""
    if not isinstance(envelope, Envelope):
        raise TypeError(
            f"{type(transport).__name__}.send takes an Envelope "
            f"(Envelope.from_message(message)), not {type(envelope).__name__}"
        )


def _serialise(message: Message, smtputf8: bool) -> bytes:
    base = message.policy if isinstance(message, EmailMessage) else email_policy.compat32
    policy = _wire_policy(base, smtputf8)
    try:
        # The multiparts whose boundary the generator is about to draw (the builder's
        # messages have theirs already).
        drawn = [part for part in message.walk() if part.is_multipart() and not _boundary(part)]
        for _ in range(_BOUNDARY_ATTEMPTS):
            buffer = io.BytesIO()
            # What message.as_bytes(policy=...) does, without its per-call policy clone.
            BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
            data = buffer.getvalue()
            clashing = [part for part in drawn if _clashes(part, data)]
            if not clashing:
                return data
            for part in clashing:
                part.set_boundary(_fresh_boundary())
    except (ValueError, TypeError, LookupError) as error:
        raise InvalidMessage(f"the message cannot be serialised: {error}") from error
    raise InvalidMessage("no multipart boundary was found that the message's text does not hold")


#: How often a multipart boundary is drawn again before the message is refused.
_BOUNDARY_ATTEMPTS = 5


def _boundary(multipart: Message) -> str | None:
    # The parameters policy.default already parsed, else (compat32) parsed here.
    params = getattr(multipart.get("Content-Type"), "params", None)
    if params is not None:
        boundary: str | None = params.get("boundary")
        return boundary
    return multipart.get_boundary()


def _clashes(multipart: Message, data: bytes) -> bool:
    """Whether the delimiter of ``multipart`` starts more lines of ``data`` than its own.

    The generator makes sure a boundary it draws is not in the parts' text only when lines
    end in LF: its check (a regular expression anchored with ``$``) misses a delimiter line
    ending in CRLF, which is how the wire form is written. Counting the delimiter lines finds
    it.
    """
    boundary = _boundary(multipart) or ""
    parts = multipart.get_payload()
    delimiter = b"\n--" + boundary.encode("utf-8", "surrogateescape")
    return data.count(delimiter) > max(len(parts), 1) + 1  # each part's, and the closing one


def _fresh_boundary() -> str:
    # The stdlib's boundary shape, drawn from the system's random source: a boundary written
    # into a message's text on purpose would need the next one foreseen.
    return "=" * 15 + f"{secrets.randbelow(sys.maxsize):0{_BOUNDARY_DIGITS}d}" + "=="


_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


@functools.lru_cache(maxsize=16)
def _wire_policy(base: Any, smtputf8: bool) -> Any:
    # Policies are immutable and compared by identity: clone each one once, not per message.
    if smtputf8 and isinstance(base, email_policy.EmailPolicy):
        return base.clone(linesep="\r\n", utf8=True)
    return base.clone(linesep="\r\n")


# A line break followed by a space or tab continues a folded header; any other CR or LF
# would start a new header line (header injection).
_FOLD = re.compile(r"\r?\n[ \t]")
_LINE_BREAK = re.compile(r"[\r\n]")


def check_header_lines(message: Message) -> None:
    """Raise :class:`~mailreset.errors.InvalidMessage` for a CR or LF in any header.

    Some Python versions (3.11.7 among them) write such a header as it is, which would let a
    value start a header of its own (header injection); folded continuation lines are fine.
    """
    for name, value in message.items():
        if _LINE_BREAK.search(name) or _LINE_BREAK.search(_FOLD.sub(" ", str(value))):
            raise InvalidMessage(f"the {name!r} header contains a line break (CR or LF)")
