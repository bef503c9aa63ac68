"""Jinja2 templates to a standard :class:`email.message.EmailMessage` every mail client shows well.

:class:`MessageBuilder` renders ``{template}.txt`` and/or ``{template}.html`` and builds a
message with the modern email API (``email.policy.default``): ``multipart/alternative`` with the
text first and the HTML last, ``multipart/related`` around the HTML when it has inline images,
``multipart/mixed`` around everything when there are attachments. Every header value and
address is checked *before* anything is built, so header injection raises
:class:`~mailreset.errors.InvalidMessage` and never reaches a transport.

The parts live in private modules, one concern each: ``_templating`` (the Jinja2
environment and rendering), ``_locales`` (the bundled translations), ``_mime`` (MIME
assembly), ``_attachments`` (:class:`Attachment`), ``_headers`` and ``_addresses`` (the
checks). This module is the public import.

**How Bcc travels.** Bcc recipients are kept as a ``Bcc`` header on the returned
``EmailMessage`` object, exactly as :meth:`smtplib.SMTP.send_message` expects: it reads the
envelope from To, Cc and Bcc and deletes Bcc from what it transmits. A transport that
pre-serialises messages must do the same; :func:`envelope` gives ``(sender, recipients)`` with
the Bcc addresses included, and :func:`wire_bytes` gives the bytes to transmit, with the Bcc
header removed and CRLF line ends. Keeping Bcc as a header (rather than a private attribute)
means it survives ``copy.copy``, pickling and an on-disk spool that stores
``message.as_bytes()``. The flip side: ``message.as_bytes()`` itself still shows the Bcc line,
so never hand it to ``sendmail`` directly; use :func:`wire_bytes`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import gettext
import re
import secrets
from collections.abc import Iterable, Mapping
from email.message import EmailMessage, Message
from email.utils import make_msgid
from typing import Any

import jinja2

from mailreset._attachments import Attachment
from mailreset._clock import Clock, utc_now
from mailreset._envelope import Envelope, envelope
from mailreset._headers import (
    AddressInput,
    check_header_name,
    check_header_value,
    parse_address,
    parse_addresses,
)
from mailreset._locales import (
    bundled_translations,
    install_translations,
    join_cjk,
    language_tag,
    unspaced,
)
from mailreset._mime import set_body
from mailreset._policy import CheckedAddresses, CheckedMessageID, caching_policy
from mailreset._templating import Templates, TemplatesInput
from mailreset.errors import ConfigurationError, InvalidMessage, TemplateError

__all__ = ["Attachment", "MessageBuilder", "envelope", "wire_bytes"]

#: Headers that ``headers=`` may not set: each has its own argument, or is the builder's job.
_RESERVED = frozenset(
    name.lower()
    for name in (
        "From", "Sender", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID",
        "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
        "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Bcc", "Resent-Date",
        "Resent-Message-ID", "Return-Path",
    )
)  # fmt: skip
#: The bundled templates' names: mail a program sends on its own, which RFC 3834 marks
#: ``Auto-Submitted: auto-generated`` so that out-of-office robots do not answer it.
_AUTOMATIC = frozenset({"reset_password", "password_changed", "reset_password_unknown"})


class MessageBuilder:
    """Builds email messages from Jinja2 templates: text, HTML, or both.

    ``templates`` is a folder path, a Jinja2 loader or a Jinja2 ``Environment`` (its filters,
    globals and settings are kept); None means only the bundled templates. The app's templates
    are searched first, so one named like a bundled template (``reset_password.html``)
    replaces it. Whatever the source, undefined variables are errors
    (``StrictUndefined``), HTML templates are autoescaped and text templates are not, and
    ``{% trans %}`` works (``jinja2.ext.i18n``).

    A builder is safe to share between threads; make one at start-up and keep it (it caches
    compiled templates and the headers its messages repeat, which makes building several
    times faster than doing it by hand with ``EmailMessage``).

    Compiled templates are cached for the builder's life unless the given Environment has
    ``auto_reload`` on (Jinja2's default for an Environment you make yourself); a builder made
    from a folder path or a loader does not notice edits after a template's first use.

    Args:
        templates: where the app's templates are (see above).
        sender: the From address, ``"a@b.example"`` or ``"Name <a@b.example>"``.
        reply_to: a default Reply-To address or list of them.
        headers: extra headers for every message (``build(headers=...)`` adds to them).
        domain: the right-hand side of Message-IDs; default: the sender's domain (never the
            machine's host name, which would leak and costs a DNS look-up).
        locale: the language of the bundled templates: None or ``"en"`` (English),
            ``"zh_Hans"`` (Simplified Chinese); other locales need ``translations``.
        translations: a ``gettext.NullTranslations``-like object for the app's own
            ``{% trans %}`` strings; consulted for any string the bundled catalog lacks.
        clock: returns the aware datetime for the Date header (tests).

    Raises:
        ConfigurationError: a bad option (a missing folder, an unknown locale).
        InvalidMessage: a bad sender, reply_to or header.

    Attributes:
        locale: the canonical locale in use (``"en"``, ``"zh_Hans"`` or the one given).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        templates: TemplatesInput = None,
        *,
        sender: AddressInput,
        reply_to: AddressInput | Iterable[AddressInput] | None = None,
        headers: Mapping[str, str] | None = None,
        domain: str | None = None,
        locale: str | None = None,
        translations: gettext.NullTranslations | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._sender = parse_address(sender, "sender")
        self._reply_to = (
            tuple(parse_addresses(reply_to, "reply_to")) if reply_to is not None else ()
        )
        self._headers = _check_headers(headers or {})
        if domain is None:
            domain = self._sender.domain
        check_header_value(domain, "domain")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
            raise ConfigurationError(f"domain must be a host name, not {domain!r}")
        self._domain = domain
        # A dot-atom domain makes Message-IDs the email parser accepts as they are.
        self._message_id: type[str] = CheckedMessageID if all(domain.split(".")) else str
        self._clock: Clock = clock or utc_now
        self._policy = caching_policy()
        self._from = str(self._sender)
        self._boundary = f"=_mailreset_{secrets.token_hex(12)}"
        self._reply_to_value = ", ".join(map(str, self._reply_to))
        catalog, canonical = bundled_translations(locale)
        if canonical is None and translations is None:
            raise ConfigurationError(
                f"locale {locale!r} has no bundled translation (bundled: en, zh_Hans); "
                "pass translations= with a gettext catalog for it"
            )
        if translations is not None:
            catalog.add_fallback(translations)
        self.locale = canonical or str(locale)
        self._lang = language_tag(self.locale)
        self._unspaced = unspaced(self.locale)
        self._templates = Templates(templates)
        install_translations(self._templates.environment, catalog)

    def __repr__(self) -> str:
        return (
            f"MessageBuilder(templates={self._templates.where!r}, sender={str(self._sender)!r}, "
            f"locale={self.locale!r})"
        )

    @property
    def environment(self) -> jinja2.Environment:
        """The Jinja2 environment the builder renders with (add filters or globals here)."""
        return self._templates.environment

    def build(
        self,
        template: str,
        *,
        to: AddressInput | Iterable[AddressInput],
        context: Mapping[str, Any] | None = None,
        subject: str | None = None,
        cc: AddressInput | Iterable[AddressInput] = (),
        bcc: AddressInput | Iterable[AddressInput] = (),
        reply_to: AddressInput | Iterable[AddressInput] | None = None,
        headers: Mapping[str, str] | None = None,
        attachments: Iterable[Attachment] = (),
    ) -> EmailMessage:
        """Render ``template`` and build the message.

        ``subject`` overrides the template's ``{% block subject %}``; ``reply_to`` and
        ``headers`` add to or replace the builder's defaults. Bcc recipients stay on the
        message object only for the envelope (see the module docstring).

        Raises:
            InvalidMessage: a line break or control character in a header or address, an
                invalid address, no recipient, a reserved header in ``headers``, or inline
                images without an HTML part.
            TemplateError: neither template exists, a syntax error, an undefined variable,
                or no subject at all.
        """
        to_addresses = parse_addresses(to, "to")
        cc_addresses = parse_addresses(cc, "cc")
        bcc_addresses = parse_addresses(bcc, "bcc")
        if not (to_addresses or cc_addresses or bcc_addresses):
            raise InvalidMessage("the message has no recipient: give to, cc or bcc")
        reply_addresses = (
            self._reply_to if reply_to is None else tuple(parse_addresses(reply_to, "reply_to"))
        )
        if subject is not None:
            check_header_value(subject, "subject")
        extra = {**self._headers, **_check_headers(headers)} if headers else self._headers
        files = tuple(attachments)
        for item in files:
            if not isinstance(item, Attachment):
                raise InvalidMessage(
                    f"attachments must be Attachment objects, not {type(item).__name__}"
                )
        rendered = self._templates.render(template, {"lang": self._lang, **(context or {})})
        text, html, template_subject = rendered.text, rendered.html, rendered.subject
        if self._unspaced:
            # No stray spaces around a CJK app name (see join_cjk).
            text = join_cjk(text)
            html = None if html is None else join_cjk(html)
            if template_subject is not None:
                template_subject = join_cjk(template_subject)
        if subject is None:
            if template_subject is None:
                raise TemplateError(
                    f"no subject for {template!r}: pass subject= or add "
                    "{% block subject %}...{% endblock %} to the template",
                    template=template,
                )
            subject = check_header_value(template_subject, f"the subject of {template!r}")
        if html is None and any(item.inline for item in files):
            raise InvalidMessage(
                f"inline images (Attachment.content_id) need an HTML part; {template!r} has none"
            )

        message = EmailMessage(policy=self._policy)
        # Strings, not Address objects: the policy caches headers made from strings.
        # The builder's own addresses go in as strings (the policy caches those headers), the
        # per-message ones as CheckedAddresses (already validated: no second parse).
        message["From"] = self._from
        if to_addresses:
            message["To"] = CheckedAddresses(to_addresses)
        if cc_addresses:
            message["Cc"] = CheckedAddresses(cc_addresses)
        if bcc_addresses:
            message["Bcc"] = CheckedAddresses(bcc_addresses)
        if reply_to is None:
            if self._reply_to_value:
                message["Reply-To"] = self._reply_to_value
        elif reply_addresses:
            message["Reply-To"] = CheckedAddresses(reply_addresses)
        message["Subject"] = subject
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigurationError("the clock must return an aware datetime, not a naive one")
        message["Date"] = now
        message["Message-ID"] = self._message_id(make_msgid(domain=self._domain))
        if template in _AUTOMATIC and not _has(extra, "Auto-Submitted"):
            message["Auto-Submitted"] = "auto-generated"
        set_body(message, text, html, files, self._boundary)
        # After the body: set_content() would drop a Content-Language set before it.
        for name, value in extra.items():
            message[name] = value
        return message


def _has(headers: Mapping[str, str], name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key in headers)


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        raise InvalidMessage(f"headers must be a mapping, not {type(headers).__name__}")
    checked = {}
    for name, value in headers.items():
        check_header_name(name)
        if name.lower() in _RESERVED:
            raise InvalidMessage(
                f"headers may not set {name!r}: use the builder's own argument for it "
                "(sender, to, cc, bcc, reply_to, subject), or leave it to the builder"
            )
        checked[name] = check_header_value(value, f"header {name!r}")
    return checked


def wire_bytes(message: Message) -> bytes:
    """The bytes to transmit for ``message``: Bcc and Resent-Bcc removed, CRLF line ends.

    What :meth:`smtplib.SMTP.send_message` would send (before dot-stuffing), for code that
    serialises once and sends with ``sendmail``. The message itself is not changed.

    Raises:
        InvalidMessage: no sender, no recipient, or a message that cannot be serialised.

    .. versionadded:: 0.1
    """
    return Envelope.from_message(message).data
