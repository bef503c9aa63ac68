"""Attachments and inline images: the frozen :class:`Attachment` and its checks.

Public as :class:`mailreset.messages.Attachment`; :mod:`mailreset._mime` puts them into a
message.
"""

from __future__ import annotations

import mimetypes
import re

import attrs

from mailreset._headers import check_header_value
from mailreset.errors import InvalidMessage

__all__ = ["Attachment"]

_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\Z")
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?:@[A-Za-z0-9.-]+)?\Z")


def _guess_type(attachment: Attachment) -> str:
    guessed, encoding = mimetypes.guess_type(attachment.filename, strict=False)
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    return guessed


def _check_filename(instance: Attachment, attribute: attrs.Attribute[str], value: str) -> None:
    check_header_value(value, "Attachment.filename")
    if not value.strip() or "/" in value or "\\" in value:
        raise InvalidMessage(
            f"Attachment.filename must be a non-empty name without a path, not {value!r}"
        )


def _check_content(instance: Attachment, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes):
        raise InvalidMessage(
            f"Attachment.content must be bytes, not {type(value).__name__} "
            "(encode text yourself, e.g. text.encode('utf-8'))"
        )


def _check_content_type(instance: Attachment, attribute: attrs.Attribute[str], value: str) -> None:
    check_header_value(value, "Attachment.content_type")
    if not _CONTENT_TYPE.match(value) or value.lower().startswith("multipart/"):
        raise InvalidMessage(
            f"Attachment.content_type must be a MIME type such as 'application/pdf', not {value!r}"
        )


def _check_content_id(
    instance: Attachment, attribute: attrs.Attribute[str | None], value: str | None
) -> None:
    if value is None:
        return
    check_header_value(value, "Attachment.content_id")
    if not _CONTENT_ID.match(value):
        raise InvalidMessage(
            f"Attachment.content_id must look like 'logo' or 'logo@app.example' (no angle "
            f"brackets, no spaces), not {value!r}"
        )


def _to_bytes(value: bytes | bytearray | memoryview) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


@attrs.frozen(kw_only=True)
class Attachment:
    """A file to attach, or an image to show inline in the HTML part.

    With a ``content_id`` the attachment is an inline image: the HTML refers to it as
    ``<img src="cid:{content_id}">`` and it goes into a ``multipart/related`` part with the
    HTML. Without one it is an ordinary attachment.

    Attributes:
        filename: the name shown to the reader (no path).
        content: the file's bytes.
        content_type: its MIME type; guessed from the file name when not given.
        content_id: for an inline image, the id the HTML uses after ``cid:``.

    .. versionadded:: 0.1
    """

    filename: str = attrs.field(validator=_check_filename)
    content: bytes = attrs.field(converter=_to_bytes, validator=_check_content, repr=False)
    content_type: str = attrs.field(
        default=attrs.Factory(_guess_type, takes_self=True), validator=_check_content_type
    )
    content_id: str | None = attrs.field(default=None, validator=_check_content_id)

    @property
    def inline(self) -> bool:
        """True for an inline image (it has a ``content_id``)."""
        return self.content_id is not None


# Documented, pickled and shown where users import it from.
Attachment.__module__ = "mailreset.messages"
