"""MIME assembly: rendered text, HTML and attachments into one ``EmailMessage`` body.

``multipart/alternative`` with the text first and the HTML last, ``multipart/related`` around
the HTML when it has inline images, ``multipart/mixed`` around everything when there are
attachments. Only the modern email API (``set_content``, ``make_alternative``, ...).
"""

from __future__ import annotations

from email.message import EmailMessage, MIMEPart

from mailreset._attachments import Attachment

__all__ = ["set_body", "transfer_encoding"]

_MAX_LINE = 998  # RFC 5322 2.1.1: octets per line, CRLF excluded


def transfer_encoding(body: str) -> str:
    """7bit for short-lined ASCII; else quoted-printable or base64, whichever is smaller.

    Never 8bit: a server without 8BITMIME would have to convert or refuse it. Both encodings
    keep every line under 998 octets without changing the text (quoted-printable's soft line
    breaks disappear when decoded), so long links are never broken.
    """
    if body.isascii() and max(map(len, body.split("\n")), default=0) <= _MAX_LINE:
        return "7bit"
    encoded = len(body.encode("utf-8"))
    ascii_count = len(body.encode("ascii", "ignore"))
    # quoted-printable costs ~3 octets per non-ASCII octet, base64 4/3 octets for every octet.
    return "quoted-printable" if (encoded - ascii_count) * 5 < ascii_count else "base64"


def set_body(
    message: EmailMessage,
    text: str,
    html: str | None,
    files: tuple[Attachment, ...],
    boundary: str,
) -> None:
    """Give ``message`` its body: text, optional HTML, inline images and attachments.

    ``set_content`` replaces every ``Content-*`` header of ``message``, and the ``make_*``
    calls move them into the first sub-part: set the message's own ``Content-*`` headers
    (Content-Language, say) after this, not before.
    """
    # Sub-parts are MIMEParts: EmailMessage.add_alternative/add_attachment would make each of
    # them an EmailMessage, which stamps a stray MIME-Version header on every part.
    policy = message.policy
    message.set_content(text, cte=transfer_encoding(text))
    if html is not None:
        message.make_alternative()
        # One boundary per builder (its Content-Type header is then cached), unless the text
        # happens to contain it; the generator picks a fresh one for every other multipart.
        if boundary not in text and boundary not in html:
            message.set_boundary(boundary)
        html_part = MIMEPart(policy=policy)
        html_part.set_content(html, subtype="html", cte=transfer_encoding(html))
        for item in files:
            if item.content_id is not None:
                if html_part.get_content_maintype() != "multipart":
                    html_part.make_related()
                    html_part.set_param("type", "text/html")  # required by RFC 2387
                image = MIMEPart(policy=policy)
                maintype, subtype = item.content_type.split("/", 1)
                image.set_content(
                    item.content,
                    maintype,
                    subtype,
                    cid=f"<{item.content_id}>",
                    disposition="inline",
                    filename=item.filename,
                )
                html_part.attach(image)
        message.attach(html_part)  # type: ignore[arg-type]  # typeshed wants EmailMessage
    for item in files:
        if item.content_id is None:
            if message.get_content_type() != "multipart/mixed":
                message.make_mixed()
            part = MIMEPart(policy=policy)
            maintype, subtype = item.content_type.split("/", 1)
            part.set_content(
                item.content, maintype, subtype, disposition="attachment", filename=item.filename
            )
            message.attach(part)  # type: ignore[arg-type]  # typeshed wants EmailMessage
