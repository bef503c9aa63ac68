"""What the sink knows about a message without keeping it: the index entry made on arrival.

:func:`summarize` reads the envelope, the From, To and Subject headers, the links and the
start of the text once, when a message arrives. The list, the search, the wait endpoint and
the terminal block work from that :class:`Summary` alone, so a message body can live on disk
and no request parses a whole message again just to list it.

Summaries parse with a small MIME walk over bytes (split at boundaries, decode QP and base64
in C): about 20 us a message, where the email package takes 80 us (``compat32``) to well over
a millisecond (``policy.default``), so summarising keeps pace with the SMTP server. Anything
the walk does not expect raises, and the email package (``compat32``) takes over.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import html
import re
from email.header import decode_header, make_header

import attrs

from mailreset.testing._links import links_in

__all__ = ["SNIPPET_CHARS", "Summary", "summarize"]

#: How much of the text parts the index keeps for word search (bounded memory per message).
SNIPPET_CHARS = 8192

_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FOLDING = re.compile(r"\r?\n[ \t]+")
_MAX_DEPTH = 8


@attrs.frozen(kw_only=True)
class Summary:
    """The index entry of one message: what the list, the search and the terminal show.

    Attributes:
        sender: the envelope sender (``MAIL FROM``).
        recipients: the envelope recipients (``RCPT TO``), Bcc included.
        from_header: the decoded From header, display name and address (``""`` if none).
        to_header: the decoded To header (``""`` if none).
        subject: the decoded Subject header.
        links: the http(s) links of the HTML and text parts, first seen first.
        snippet: the start of the text parts (HTML without tags), for word search.
    """

    sender: str
    recipients: tuple[str, ...]
    from_header: str = ""
    to_header: str = ""
    subject: str = ""
    links: tuple[str, ...] = ()
    snippet: str = ""


def summarize(raw: bytes, sender: str, recipients: tuple[str, ...]) -> Summary:
    """The :class:`Summary` of the message ``raw`` received with this envelope."""
    try:
        fields = _fast_fields(raw)
    except Exception:
        fields = _slow_fields(raw)
    subject, from_header, to_header, links, snippet = fields
    return Summary(
        sender=sender,
        recipients=tuple(recipients),
        from_header=from_header,
        to_header=to_header,
        subject=subject,
        links=links,
        snippet=snippet,
    )


_Fields = tuple[str, str, str, tuple[str, ...], str]


def _fast_fields(raw: bytes) -> _Fields:
    head, body = _split(raw)
    headers = _header_map(head)
    subject, from_header, to_header = (
        _maybe_decoded(headers.get(name, "")) for name in ("subject", "from", "to")
    )
    parts = _text_parts(headers, body, 0)
    return subject, from_header, to_header, links_in(parts), _snippet_of(parts)


def _slow_fields(raw: bytes) -> _Fields:
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts: list[tuple[str, str]] = []
    for part in parsed.walk():
        if part.get_content_maintype() != "text" or part.get_filename():
            continue
        subtype = part.get_content_subtype()
        payload = part.get_payload(decode=True)
        if subtype not in {"plain", "html"} or not isinstance(payload, bytes):
            continue
        parts.append((subtype, _decode(payload, part.get_content_charset() or "utf-8")))
    subject, from_header, to_header = (
        _decoded(parsed.get(name, "")) for name in ("Subject", "From", "To")
    )
    return subject, from_header, to_header, links_in(parts), _snippet_of(parts)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw.split(b"\n", 1)[1]
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def _header_map(head: bytes) -> dict[str, str]:
    text = _FOLDING.sub(" ", head.decode("utf-8", "replace"))
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def _param(value: str, name: str) -> str | None:
    match = re.search(rf"""{name}\s*=\s*(?:"([^"]*)"|([^\s;"]+))""", value, re.IGNORECASE)
    return None if match is None else (match[1] if match[1] is not None else match[2])


def _text_parts(headers: dict[str, str], body: bytes, depth: int) -> list[tuple[str, str]]:
    if depth > _MAX_DEPTH:
        raise ValueError("MIME nested too deeply")
    content_type = headers.get("content-type", "text/plain")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.startswith("multipart/"):
        boundary = _param(content_type, "boundary")
        if not boundary:
            raise ValueError("multipart without a boundary")
        parts: list[tuple[str, str]] = []
        for piece in body.split(b"--" + boundary.encode("utf-8"))[1:]:
            if piece.startswith(b"--"):
                break
            head, part_body = _split(piece.split(b"\n", 1)[1] if b"\n" in piece else b"")
            parts.extend(_text_parts(_header_map(head), part_body, depth + 1))
        return parts
    if kind not in {"text/plain", "text/html"}:
        return []
    if headers.get("content-disposition", "").lower().startswith("attachment"):
        return []
    encoding = headers.get("content-transfer-encoding", "7bit").strip().lower()
    if encoding == "quoted-printable":
        body = binascii.a2b_qp(body)
    elif encoding == "base64":
        body = binascii.a2b_base64(body)
    return [(kind.split("/", 1)[1], _decode(body, _param(content_type, "charset") or "utf-8"))]


def _decode(payload: bytes, charset: str) -> str:
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _snippet_of(parts: list[tuple[str, str]]) -> str:
    # The text part when there is one (the HTML says the same with tags), else the HTML's text.
    texts = [text for subtype, text in parts if subtype == "plain"] or [
        html.unescape(_TAG.sub(" ", text[: SNIPPET_CHARS * 4])) for _, text in parts
    ]
    return _SPACES.sub(" ", " ".join(text[: SNIPPET_CHARS * 2] for text in texts)).strip()[
        :SNIPPET_CHARS
    ]


def _maybe_decoded(value: str) -> str:
    return _decoded(value) if "=?" in value else value


def _decoded(value: object) -> str:
    text = str(value)
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError):
        return text
