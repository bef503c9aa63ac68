"""The SMTP envelope of a message and its bytes on the wire, worked out once.

Every transport (the real one and its in-memory twin) goes through :func:`prepare`, so they
validate the same way: a sender, at least one recipient, no CR/LF in an address, Bcc in the
envelope and never on the wire.
"""

from __future__ import annotations

import copy
import email.utils
import re
from email import policy as email_policy
from email.message import EmailMessage, Message
from typing import Any

import attrs

from mailreset._convert import to_tuple
from mailreset.errors import InvalidMessage

#: Headers that never reach the wire: they only add envelope recipients.
_HIDDEN = ("Bcc", "Resent-Bcc")


@attrs.frozen(kw_only=True)
class Outgoing:
    """A message ready for SMTP: its envelope and its CRLF bytes, serialised once.

    Attributes:
        sender: the ``MAIL FROM`` address.
        recipients: the ``RCPT TO`` addresses (To, Cc, Bcc; deduplicated, in that order).
        data: the message as sent (CRLF line ends, no Bcc header), not yet dot-stuffed.
        message_id: the Message-ID header, with its angle brackets ("" when there is none).
        smtputf8: True when an address needs the SMTPUTF8 extension.
    """

    sender: str
    recipients: tuple[str, ...] = attrs.field(converter=to_tuple)
    data: bytes = attrs.field(repr=False)
    message_id: str = ""
    smtputf8: bool = False


def addresses(message: Message, *names: str) -> list[str]:
    """The addr-specs in the ``names`` headers of ``message``; CR/LF raises InvalidMessage."""
    values: list[str] = []
    for name in names:
        values.extend(str(value) for value in message.get_all(name, ()))
    if any("\r" in value or "\n" in value for value in values):
        raise InvalidMessage(f"a CR or LF in the {'/'.join(names)} header")
    return [address for _, address in email.utils.getaddresses(values) if address]


def envelope(message: Message) -> tuple[str, tuple[str, ...]]:
    """The ``(sender, recipients)`` SMTP envelope of ``message``.

    The sender is the Sender address, else the From address (as
    :meth:`smtplib.SMTP.send_message` picks it); the recipients are the To, Cc and Bcc
    addresses, deduplicated case-insensitively, in that order. Transports call this, then
    transmit :func:`mailreset.messages.wire_bytes`.

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
    for address in (senders[0], *recipients.values()):
        if any(char in address for char in "\r\n\0<> ") or address.count("@") != 1:
            raise InvalidMessage(f"not an e-mail address: {address!r}")
    return senders[0], tuple(recipients.values())


def prepare(message: Message) -> Outgoing:
    """Check ``message`` and serialise it once for SMTP (CRLF, no Bcc).

    Raises :class:`~mailreset.errors.InvalidMessage` for a message that must not be sent.
    """
    if not isinstance(message, Message):
        raise InvalidMessage(
            f"expected an email.message.EmailMessage, not {type(message).__name__}"
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
    base = message.policy if isinstance(message, EmailMessage) else email_policy.compat32
    wire_policy: email_policy.Policy[Any] | email_policy.Compat32
    if smtputf8 and isinstance(base, email_policy.EmailPolicy):
        wire_policy = base.clone(linesep="\r\n", utf8=True)
    else:
        wire_policy = base.clone(linesep="\r\n")
    try:
        data = message.as_bytes(policy=wire_policy)
    except (ValueError, TypeError, LookupError) as error:
        raise InvalidMessage(f"the message cannot be serialised: {error}") from error
    message_id = str(message.get("Message-ID", "")).strip()
    return Outgoing(
        sender=sender,
        recipients=recipients,
        data=data,
        message_id=message_id,
        smtputf8=smtputf8,
    )


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
