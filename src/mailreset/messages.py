"""Jinja2 templates to a standard :class:`email.message.EmailMessage` every mail client shows well.

:class:`MessageBuilder` renders ``{template}.txt`` and/or ``{template}.html`` and builds a
message with the modern email API (``email.policy.default``): ``multipart/alternative`` with the
text first and the HTML last, ``multipart/related`` around the HTML when it has inline images,
``multipart/mixed`` around everything when there are attachments. Every header value and
address is checked *before* anything is built, so header injection raises
:class:`~mailreset.errors.InvalidMessage` and never reaches a transport.

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
import io
import mimetypes
import os
import re
import secrets
import traceback
from collections.abc import Iterable, Iterator, Mapping
from email.message import EmailMessage, Message, MIMEPart
from email.utils import make_msgid
from importlib import resources
from typing import Any, NoReturn

import attrs
import jinja2
from markupsafe import Markup

from mailreset._clock import Clock, utc_now
from mailreset._envelope import Envelope, envelope
from mailreset._headers import (
    AddressInput,
    check_header_name,
    check_header_value,
    parse_address,
    parse_addresses,
)
from mailreset._html2text import html_to_text
from mailreset._policy import CheckedAddresses, CheckedMessageID, caching_policy
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
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\Z")
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+(?:@[A-Za-z0-9.-]+)?\Z")
_MAX_LINE = 998  # RFC 5322 2.1.1: octets per line, CRLF excluded
_BUNDLED_LOCALES = {"en": "en", "zh_hans": "zh_Hans", "zh": "zh_Hans", "zh_cn": "zh_Hans"}
_LANG_TAGS = {"en": "en", "zh_Hans": "zh-Hans"}
_MANY_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_BLANK_LINE = re.compile(r"^[ \t]+$", re.M)

TemplatesInput = str | os.PathLike[str] | jinja2.BaseLoader | jinja2.Environment | None


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


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html", ".htm", ".xml", ".xhtml"))


def _bundled_translations(locale: str | None) -> tuple[gettext.NullTranslations, str | None]:
    """Our own catalog for ``locale`` and its canonical name (None when we ship none)."""
    if locale is None:
        return gettext.NullTranslations(), "en"
    key = locale.replace("-", "_").lower()
    canonical = _BUNDLED_LOCALES.get(key)
    if canonical is None and key.startswith("en_"):
        canonical = "en"
    if canonical is None:
        return gettext.NullTranslations(), None
    if canonical == "en":
        return gettext.NullTranslations(), canonical
    catalog = resources.files("mailreset") / "locale" / canonical / "LC_MESSAGES" / "mailreset.mo"
    return gettext.GNUTranslations(io.BytesIO(catalog.read_bytes())), canonical


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _tidy_text(text: str) -> str:
    """Whitespace-only lines emptied, runs of blank lines cut to one, one final newline."""
    text = _BLANK_LINE.sub("", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")
    return text + "\n"


def _transfer_encoding(body: str) -> str:
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


def _where_failed(exc: BaseException) -> str:
    """`` (line N of NAME)`` for the innermost template frame of ``exc``'s traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.endswith(".py") and frame.lineno:
            return f" (line {frame.lineno} of {os.path.basename(frame.filename)})"
    return ""


def _empty_block(context: jinja2.runtime.Context) -> Iterator[str]:
    return iter(())


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
        catalog, canonical = _bundled_translations(locale)
        if canonical is None and translations is None:
            raise ConfigurationError(
                f"locale {locale!r} has no bundled translation (bundled: en, zh_Hans); "
                "pass translations= with a gettext catalog for it"
            )
        if translations is not None:
            catalog.add_fallback(translations)
        self.locale = canonical or str(locale)
        self._lang = _LANG_TAGS.get(self.locale, self.locale.replace("_", "-"))
        self._environment, self._where = _environment(templates)
        _install_translations(self._environment, catalog)
        self._cache_templates = not self._environment.auto_reload
        self._templates: dict[str, jinja2.Template | None] = {}

    def __repr__(self) -> str:
        return (
            f"MessageBuilder(templates={self._where!r}, sender={str(self._sender)!r}, "
            f"locale={self.locale!r})"
        )

    @property
    def environment(self) -> jinja2.Environment:
        """The Jinja2 environment the builder renders with (add filters or globals here)."""
        return self._environment

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
        text, html, template_subject = self._render(template, dict(context or {}))
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
        for name, value in extra.items():
            message[name] = value
        _set_body(message, text, html, files, self._boundary)
        return message

    # -- templates
    def _template(self, name: str) -> jinja2.Template | None:
        if self._cache_templates and name in self._templates:
            return self._templates[name]
        try:
            found: jinja2.Template | None = self._environment.get_template(name)
        except jinja2.TemplateNotFound as exc:
            if exc.name != name:  # a missing {% extends %} or {% include %} inside it
                raise TemplateError(
                    f"template {name!r} refers to a template that does not exist: {exc.name!r}",
                    template=name,
                ) from exc
            found = None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {exc.name or name!r} has a syntax error on line {exc.lineno}: "
                f"{exc.message}",
                template=name,
            ) from exc
        if self._cache_templates:
            self._templates[name] = found
        return found

    def _render(self, name: str, context: dict[str, Any]) -> tuple[str, str | None, str | None]:
        if not isinstance(name, str) or not name:
            raise TemplateError(f"the template name must be a non-empty string, not {name!r}")
        text_template = self._template(f"{name}.txt")
        html_template = self._template(f"{name}.html")
        if text_template is None and html_template is None:
            raise TemplateError(
                f"no template {name!r}: tried {name}.txt and {name}.html in {self._where}",
                template=name,
            )
        variables = {"lang": self._lang, **context}
        subject = None
        html = None
        if html_template is not None:
            html, subject = _render_template(html_template, variables)
            if subject is not None:
                # Rendered with autoescape, so it is markup: strip tags, unescape &amp; etc.
                subject = Markup(subject).striptags()  # noqa: S704
        if text_template is not None:
            text, text_subject = _render_template(text_template, variables)
            subject = text_subject if text_subject is not None else subject
            text = _tidy_text(text)
        else:  # HTML only (one of the two exists, checked above)
            text = html_to_text(html or "")
        if subject is not None:
            subject = _collapse(subject)
        return text, html, subject


def _render_template(
    template: jinja2.Template, variables: dict[str, Any]
) -> tuple[str, str | None]:
    """The body (without the subject block) and the subject block, rendered separately."""
    name = template.name or "<template>"
    try:
        try:
            subject = None
            block = template.blocks.get("subject")
            if block is not None:
                subject = "".join(block(template.new_context(variables)))
            context = template.new_context(variables)
            # The subject block renders where it stands; blank it so it is never in the body.
            # Blocks a parent template adds later go after ours, so ours still wins.
            context.blocks["subject"] = [_empty_block]
            body = "".join(template.root_render_func(context))
        except Exception:
            template.environment.handle_exception()
    except jinja2.UndefinedError as exc:
        _raise_template_error(
            f"template {name!r} uses an undefined variable{_where_failed(exc)}: {exc.message}",
            name,
            exc,
        )
    except jinja2.TemplateError as exc:
        _raise_template_error(
            f"template {name!r} failed{_where_failed(exc)}: {exc.message}", name, exc
        )
    return body, subject


def _raise_template_error(message: str, name: str, exc: BaseException) -> NoReturn:
    raise TemplateError(message, template=name) from exc


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


def _set_body(
    message: EmailMessage,
    text: str,
    html: str | None,
    files: tuple[Attachment, ...],
    boundary: str,
) -> None:
    # Sub-parts are MIMEParts: EmailMessage.add_alternative/add_attachment would make each of
    # them an EmailMessage, which stamps a stray MIME-Version header on every part.
    policy = message.policy
    message.set_content(text, cte=_transfer_encoding(text))
    if html is not None:
        message.make_alternative()
        # One boundary per builder (its Content-Type header is then cached), unless the text
        # happens to contain it; the generator picks a fresh one for every other multipart.
        if boundary not in text and boundary not in html:
            message.set_boundary(boundary)
        html_part = MIMEPart(policy=policy)
        html_part.set_content(html, subtype="html", cte=_transfer_encoding(html))
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


def _environment(templates: TemplatesInput) -> tuple[jinja2.Environment, str]:
    bundled = jinja2.PackageLoader("mailreset", "templates")
    if templates is None:
        loader: jinja2.BaseLoader = bundled
        where = "the bundled templates"
        base = None
    elif isinstance(templates, jinja2.Environment):
        base = templates
        loader = bundled if base.loader is None else jinja2.ChoiceLoader([base.loader, bundled])
        where = "the given Environment's loader and the bundled templates"
    elif isinstance(templates, jinja2.BaseLoader):
        base = None
        loader = jinja2.ChoiceLoader([templates, bundled])
        where = f"{type(templates).__name__} and the bundled templates"
    elif isinstance(templates, (str, os.PathLike)):
        base = None
        folder = os.fspath(templates)
        if not os.path.isdir(folder):
            raise ConfigurationError(f"templates folder {folder!r} does not exist")
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder), bundled])
        where = f"{folder!r} and the bundled templates"
    else:
        raise ConfigurationError(
            "templates must be a folder path, a jinja2 loader or a jinja2 Environment, "
            f"not {type(templates).__name__}"
        )
    if base is None:
        environment = jinja2.Environment(
            loader=loader,
            autoescape=_autoescape,  # noqa: S701 (a function: True for .html, False for .txt)
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )
    else:
        environment = base.overlay(
            loader=loader, autoescape=_autoescape, undefined=jinja2.StrictUndefined
        )
        # overlay() shares the app's globals dict: give ours a copy before the i18n extension
        # and gettext add names to it.
        environment.globals = dict(base.globals)
        environment.add_extension("jinja2.ext.i18n")
    return environment, where


def wire_bytes(message: Message) -> bytes:
    """The bytes to transmit for ``message``: Bcc and Resent-Bcc removed, CRLF line ends.

    What :meth:`smtplib.SMTP.send_message` would send (before dot-stuffing), for code that
    serialises once and sends with ``sendmail``. The message itself is not changed.

    Raises:
        InvalidMessage: no sender, no recipient, or a message that cannot be serialised.

    .. versionadded:: 0.1
    """
    return Envelope.from_message(message).data


def _install_translations(
    environment: jinja2.Environment, catalog: gettext.NullTranslations
) -> None:
    """Install ``catalog`` for ``{% trans %}``, with plural counts held to StrictUndefined.

    An undefined count must be a TemplateError like any undefined variable; Python 3.13's
    gettext would otherwise only warn ("Plural value must be an integer") and carry on.
    """

    def ngettext(singular: str, plural: str, count: Any) -> str:
        if isinstance(count, jinja2.Undefined):
            count._fail_with_undefined_error()
        return catalog.ngettext(singular, plural, count)

    def npgettext(context: str, singular: str, plural: str, count: Any) -> str:
        if isinstance(count, jinja2.Undefined):
            count._fail_with_undefined_error()
        return catalog.npgettext(context, singular, plural, count)

    environment.install_gettext_callables(  # type: ignore[attr-defined]
        catalog.gettext, ngettext, newstyle=True, pgettext=catalog.pgettext, npgettext=npgettext
    )
