"""MessageBuilder: templates to standard, safe, round-tripping EmailMessages."""

from __future__ import annotations

import email
import email.policy
import gettext
import smtplib
from collections.abc import Callable
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from pathlib import Path
from typing import Any

import jinja2
import pytest

import mailreset
from mailreset import (
    Attachment,
    ConfigurationError,
    InvalidMessage,
    MessageBuilder,
    TemplateError,
    envelope,
    wire_bytes,
)
from mailreset._html2text import html_to_text

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
SENDER = "Acme <no-reply@acme.example>"
RESET = {
    "url": "https://acme.example/reset/abc.def-ghi",
    "expires_minutes": 10,
    "app_name": "Acme",
}
CONTEXTS: dict[str, dict[str, Any]] = {
    "reset_password": RESET,
    "password_changed": {"app_name": "Acme", "support_url": "https://acme.example/help"},
    "reset_password_unknown": {"app_name": "Acme", "signup_url": "https://acme.example/join"},
}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def clock() -> datetime:
    return NOW


@pytest.fixture
def builder() -> MessageBuilder:
    return MessageBuilder(sender=SENDER, clock=clock)


@pytest.fixture
def app_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    return folder


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def leaves(message: Message) -> list[tuple[str, Any]]:
    """(content type, decoded content) of every non-multipart part, in order."""
    found = []
    for part in message.walk():
        if not part.is_multipart():
            assert isinstance(part, MIMEPart)
            found.append((part.get_content_type(), part.get_content()))
    return found


def structure(message: Message) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def roundtrip(message: EmailMessage) -> EmailMessage:
    raw = message.as_bytes()
    too_long = [line for line in raw.split(b"\n") if len(line.rstrip(b"\r")) > 998]
    assert [] == too_long
    parsed = email.message_from_bytes(raw, policy=email.policy.strict)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


# -- round trip -----------------------------------------------------------------------------


def _variants() -> list[tuple[str, str | None, dict[str, Any]]]:
    variants: list[tuple[str, str | None, dict[str, Any]]] = [
        (name, locale, {}) for locale in (None, "zh_Hans") for name in CONTEXTS
    ]
    variants.append(("reset_password", None, {"cc": "Carol <carol@example.org>"}))
    variants.append(
        (
            "reset_password",
            "zh_Hans",
            {
                "to": [
                    Address("张三 Zhang", "zhang", "example.cn"),
                    "Zoë Ünïcode <zoe@example.de>",
                ],
                "bcc": "hidden@example.net",
                "reply_to": "Support <help@acme.example>",
                "headers": {"X-Campaign": "réinitialisation", "List-Id": "<reset.acme.example>"},
                "attachments": [
                    Attachment(filename="logo.png", content=PNG, content_id="logo@acme.example"),
                    Attachment(filename="Überblick.pdf", content=b"%PDF-1.4\n" + bytes(300)),
                ],
            },
        )
    )
    return variants


@pytest.mark.parametrize(("name", "locale", "options"), _variants())
def test_every_built_message_round_trips_under_the_strict_policy(
    name: str, locale: str | None, options: dict[str, Any]
) -> None:
    """as_bytes() parsed back with policy.strict gives the same headers, parts and text."""
    builder = MessageBuilder(sender=SENDER, locale=locale, clock=clock)
    kwargs: dict[str, Any] = {"to": "Bob Example <bob@example.com>", **options}
    message = builder.build(name, context=CONTEXTS[name], **kwargs)

    parsed = roundtrip(message)

    assert [(k, str(v)) for k, v in message.items()] == [(k, str(v)) for k, v in parsed.items()]
    assert structure(message) == structure(parsed)
    assert leaves(message) == leaves(parsed)


def test_raw_message_is_seven_bit_clean_even_with_non_ascii_everywhere() -> None:
    """Non-ASCII names, subject and body are encoded (RFC 2047, base64/QP): the bytes are ASCII."""
    builder = MessageBuilder(
        sender="Zoë Ünïcode <zoe@acme.example>", locale="zh_Hans", clock=clock
    )
    message = builder.build(
        "reset_password", to="张三 <zhang@example.cn>", context={**RESET, "user_name": "张三"}
    )

    raw = message.as_bytes()

    assert raw.isascii()
    assert "Zoë Ünïcode <zoe@acme.example>" == str(roundtrip(message)["From"])
    assert "重置您的 Acme 密码" == str(roundtrip(message)["Subject"])


def test_long_lines_are_kept_whole_and_transported_under_998_octets(
    builder: MessageBuilder,
) -> None:
    """A 3000-character link stays one line in the text, with no raw line over 998 octets."""
    url = "https://acme.example/reset/" + "x" * 3000
    message = builder.build("reset_password", to="bob@example.com", context={**RESET, "url": url})

    parsed = roundtrip(message)

    assert url in text_of(parsed).splitlines()
    assert "format=flowed" not in message.as_string()
    assert "quoted-printable" == message.get_body(("plain",))["Content-Transfer-Encoding"]  # type: ignore[index]


def test_short_ascii_text_is_sent_as_7bit_and_chinese_text_as_base64() -> None:
    """Transfer encodings: 7bit for plain short ASCII, base64 for mostly non-ASCII text."""
    english = MessageBuilder(sender=SENDER).build(
        "reset_password", to="a@b.example", context=RESET
    )
    chinese = MessageBuilder(sender=SENDER, locale="zh_Hans").build(
        "reset_password", to="a@b.example", context=RESET
    )

    assert "7bit" == english.get_body(("plain",))["Content-Transfer-Encoding"]  # type: ignore[index]
    assert "base64" == chinese.get_body(("plain",))["Content-Transfer-Encoding"]  # type: ignore[index]


# -- structure, headers ---------------------------------------------------------------------


def test_text_and_html_make_multipart_alternative_with_the_text_first(
    builder: MessageBuilder,
) -> None:
    """multipart/alternative: text/plain first, text/html last."""
    message = builder.build("reset_password", to="bob@example.com", context=RESET)

    assert ["multipart/alternative", "text/plain", "text/html"] == structure(message)


def test_builder_sets_from_to_cc_reply_to_date_and_message_id() -> None:
    """The standard headers come from the builder's options and build's arguments."""
    builder = MessageBuilder(
        sender=SENDER, reply_to="help@acme.example", domain="mail.acme.example", clock=clock
    )
    message = builder.build(
        "reset_password",
        to=["bob@example.com", "eve@example.org"],
        cc="c@example.net",
        context=RESET,
    )

    assert "Acme <no-reply@acme.example>" == message["From"]
    assert "bob@example.com, eve@example.org" == message["To"]
    assert "c@example.net" == message["Cc"]
    assert "help@acme.example" == message["Reply-To"]
    assert NOW == message["Date"].datetime
    assert message["Message-ID"].endswith("@mail.acme.example>")
    assert "1.0" == message["MIME-Version"]


def test_message_id_domain_defaults_to_the_senders_domain(builder: MessageBuilder) -> None:
    """Without domain=, Message-IDs use the sender's domain, never the host name."""
    first = builder.build("reset_password", to="bob@example.com", context=RESET)
    second = builder.build("reset_password", to="bob@example.com", context=RESET)

    assert first["Message-ID"].endswith("@acme.example>")
    assert first["Message-ID"] != second["Message-ID"]


def test_build_reply_to_and_headers_add_to_the_builder_defaults() -> None:
    """build(reply_to=..., headers=...) replace and extend the builder's defaults."""
    builder = MessageBuilder(
        sender=SENDER, reply_to="a@acme.example", headers={"X-App": "acme", "X-Env": "prod"}
    )
    message = builder.build(
        "reset_password",
        to="bob@example.com",
        context=RESET,
        reply_to=["b@acme.example", "c@acme.example"],
        headers={"X-Env": "test"},
    )

    assert "b@acme.example, c@acme.example" == message["Reply-To"]
    assert ("acme", "test") == (message["X-App"], message["X-Env"])


@pytest.mark.parametrize(
    ("headers", "template_files"),
    [
        ({"Content-Language": "de"}, {"note.txt": "{% block subject %}S{% endblock %}hi"}),
        ({"Content-Language": "de"}, {"note.html": "{% block subject %}S{% endblock %}<p>hi"}),
        (
            {"Content-Language": "de", "X-Trace": "1", "List-Unsubscribe": "<mailto:u@a.example>"},
            {"note.txt": "{% block subject %}S{% endblock %}hi", "note.html": "<p>hi</p>"},
        ),
    ],
)
def test_every_header_given_is_kept_content_language_included(
    app_templates: Path, headers: dict[str, str], template_files: dict[str, str]
) -> None:
    """headers= values reach the message's top level, whatever its MIME structure; a
    Content-* header is not dropped by the body that set_content() writes later."""
    builder = MessageBuilder(write(app_templates, template_files), sender=SENDER)
    attachment = Attachment(filename="a.pdf", content=b"%PDF-1.4")

    for attachments in ((), (attachment,)):
        message = roundtrip(
            builder.build("note", to="b@example.com", headers=headers, attachments=attachments)
        )

        assert headers == {name: message[name] for name in headers}
        assert [] == [part for part in message.iter_parts() if part["Content-Language"]]


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_bundled_mails_are_auto_submitted_auto_generated(name: str) -> None:
    """Every bundled mail says Auto-Submitted: auto-generated (RFC 3834), so out-of-office
    robots do not answer it, in every locale."""
    for locale in (None, "zh_Hans"):
        builder = MessageBuilder(sender=SENDER, locale=locale)

        message = roundtrip(builder.build(name, to="b@example.com", context=CONTEXTS[name]))

        assert ["auto-generated"] == message.get_all("Auto-Submitted")


def test_auto_submitted_is_the_apps_choice_for_its_own_and_given_headers(
    app_templates: Path,
) -> None:
    """An app's own template gets no Auto-Submitted unless asked; headers= overrides ours."""
    builder = MessageBuilder(
        write(app_templates, {"welcome.txt": "{% block subject %}Hi{% endblock %}Welcome"}),
        sender=SENDER,
    )

    assert None is builder.build("welcome", to="b@example.com")["Auto-Submitted"]
    overridden = builder.build(
        "reset_password", to="b@example.com", context=RESET, headers={"auto-submitted": "no"}
    )
    assert ["no"] == overridden.get_all("Auto-Submitted")


def test_a_naive_clock_is_a_configuration_error() -> None:
    """The Date header needs an aware datetime; a naive clock is refused, not guessed."""
    builder = MessageBuilder(sender=SENDER, clock=lambda: datetime(2026, 1, 1))

    with pytest.raises(ConfigurationError, match="aware"):
        builder.build("reset_password", to="bob@example.com", context=RESET)


# -- subject --------------------------------------------------------------------------------


def test_subject_comes_from_the_text_templates_block_and_not_the_body(
    builder: MessageBuilder,
) -> None:
    """The subject block is rendered on its own and appears in neither body."""
    message = builder.build("reset_password", to="bob@example.com", context=RESET)

    assert "Reset your Acme password" == message["Subject"]
    assert not text_of(message).startswith("Reset your")
    assert "Reset your Acme password</title>" in html_of(message)  # the title, on purpose
    assert "Reset your Acme password" not in html_of(message).split("</head>")[1]


def test_subject_argument_overrides_the_block(builder: MessageBuilder) -> None:
    """subject= wins over the template's subject block."""
    message = builder.build("reset_password", to="b@example.com", context=RESET, subject="Hi")

    assert "Hi" == message["Subject"]


def test_subject_whitespace_is_collapsed_and_html_subjects_are_unescaped(
    app_templates: Path,
) -> None:
    """A multi-line subject block becomes one line; an HTML one is unescaped text."""
    write(
        app_templates,
        {
            "spaced.txt": "{% block subject %}\n  Hello\n\n   {{ name }}  \n{% endblock %}body",
            "fancy.html": "{% block subject %}Tom &amp; {{ name }}{% endblock %}<p>hi</p>",
        },
    )
    builder = MessageBuilder(app_templates, sender=SENDER)

    spaced = builder.build("spaced", to="b@example.com", context={"name": "Jerry"})
    fancy = builder.build("fancy", to="b@example.com", context={"name": "<Jerry>"})

    assert "Hello Jerry" == spaced["Subject"]
    assert "Tom & <Jerry>" == fancy["Subject"]


def test_a_template_without_a_subject_needs_the_argument(app_templates: Path) -> None:
    """No subject block and no subject= is a TemplateError that says what to do."""
    write(app_templates, {"plain.txt": "just text"})
    builder = MessageBuilder(app_templates, sender=SENDER)

    with pytest.raises(TemplateError, match="pass subject="):
        builder.build("plain", to="b@example.com")
    assert "ok" == builder.build("plain", to="b@example.com", subject="ok")["Subject"]


# -- header injection -----------------------------------------------------------------------

INJECTIONS = [
    "x\r\nBcc: victim@evil.example",
    "x\nBcc: victim@evil.example",
    "x\rBcc: victim@evil.example",
    "x\x00y",
    "x\u2028Bcc: victim@evil.example",
    "x\x85y",
    "x\x0bY",
]
ARGUMENT_INJECTIONS: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("subject", lambda bad: {"subject": bad}),
    ("to display name", lambda bad: {"to": f'"{bad}" <bob@example.com>'}),
    ("to address", lambda bad: {"to": f"bob{bad}@example.com"}),
    ("cc", lambda bad: {"cc": [f"Carol {bad} <c@example.com>"]}),
    ("bcc", lambda bad: {"bcc": f"c@example.com{bad}"}),
    ("reply_to", lambda bad: {"reply_to": f"Help {bad} <h@example.com>"}),
    ("header value", lambda bad: {"headers": {"X-Thing": bad}}),
    ("header name", lambda bad: {"headers": {f"X-{bad}": "v"}}),
    ("attachment name", lambda bad: {"attachments": [Attachment(filename=bad, content=b"")]}),
]


@pytest.mark.parametrize("bad", INJECTIONS)
@pytest.mark.parametrize(("where", "arguments"), ARGUMENT_INJECTIONS, ids=str)
def test_line_breaks_and_nul_in_any_header_input_raise_invalid_message(
    builder: MessageBuilder,
    where: str,
    arguments: Callable[[str], dict[str, Any]],
    bad: str,
) -> None:
    """CR, LF, NUL and other line breaks anywhere near a header raise InvalidMessage."""

    def build() -> EmailMessage:
        # Attachment checks its filename when made: that is part of what is tested.
        return builder.build(
            "reset_password", context=RESET, **{"to": "b@x.example", **arguments(bad)}
        )

    with pytest.raises(InvalidMessage):
        build()


@pytest.mark.parametrize("bad", INJECTIONS)
@pytest.mark.parametrize(
    "options",
    [
        lambda bad: {"sender": f"Acme {bad} <a@acme.example>"},
        lambda bad: {"sender": SENDER, "reply_to": f"r@acme.example{bad}"},
        lambda bad: {"sender": SENDER, "headers": {"X-A": bad}},
    ],
)
def test_builder_options_are_checked_for_injection_when_it_is_made(
    bad: str, options: Callable[[str], dict[str, Any]]
) -> None:
    """Injection in the builder's own sender, reply_to or headers fails at construction."""
    with pytest.raises(InvalidMessage):
        MessageBuilder(**options(bad))


def test_a_line_break_from_template_data_cannot_inject_into_the_subject(
    builder: MessageBuilder,
) -> None:
    """Template subjects are collapsed to one line, so data with CRLF cannot add headers."""
    message = builder.build(
        "reset_password",
        to="bob@example.com",
        context={**RESET, "app_name": "Acme\r\nBcc: victim@evil.example"},
    )

    assert "Reset your Acme Bcc: victim@evil.example password" == message["Subject"]
    assert None is message["Bcc"]


@pytest.mark.parametrize("bad", ["x\x00y", "x\u2028y", "x\x85y", "x\x1by"])
def test_address_objects_are_checked_too(builder: MessageBuilder, bad: str) -> None:
    """Address objects get the same checks (the stdlib itself refuses only CR and LF)."""
    with pytest.raises(InvalidMessage):
        builder.build("reset_password", to=Address(bad, "bob", "example.com"), context=RESET)


@pytest.mark.parametrize(
    "name", ["From", "to", "BCC", "Subject", "Message-ID", "Content-Type", "Sender", "Date"]
)
def test_headers_may_not_set_what_the_builder_owns(builder: MessageBuilder, name: str) -> None:
    """headers= cannot set From, To, Bcc, Subject, MIME headers and friends."""
    with pytest.raises(InvalidMessage, match="may not set"):
        builder.build("reset_password", to="b@example.com", context=RESET, headers={name: "x"})


@pytest.mark.parametrize(
    "address",
    [
        "no-at-sign",
        "bob@",
        "@example.com",
        "bob smith@example.com",
        "bob..smith@example.com",
        ".bob@example.com",
        "bob@example..com",
        "bob@-example.com",
        "bob@exa_mple.com",
        '"quoted"@example.com',
        "bob@[127.0.0.1]",
        "bø b@example.com",
        "a@example.com, b@example.com",
        "a@example.com; b@example.com",
        "Bob <bob@example.com",
        "Bob <<bob@example.com>>",
        "x" * 65 + "@example.com",
        "",
        "   ",
    ],
)
def test_invalid_addresses_raise_invalid_message(builder: MessageBuilder, address: str) -> None:
    """Addresses are held to a strict syntax; anything else is InvalidMessage."""
    with pytest.raises(InvalidMessage):
        builder.build("reset_password", to=address, context=RESET)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("bob@example.com", "bob@example.com"),
        ("  bob@example.com ", "bob@example.com"),
        ("Bob <bob@example.com>", "Bob <bob@example.com>"),
        ('"Smith, Bob" <bob@example.com>', '"Smith, Bob" <bob@example.com>'),
        ("o'neil+tag@sub.example.co.uk", "o'neil+tag@sub.example.co.uk"),
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),
        ("Bøb <bøb@example.com>", "Bøb <bøb@example.com>"),
        (Address("Bob", "bob", "example.com"), "Bob <bob@example.com>"),
    ],
)
def test_valid_addresses_are_accepted(
    builder: MessageBuilder, given: str | Address, expected: str
) -> None:
    """Plain, named, quoted-name, sub-addressed and IDN addresses are accepted."""
    message = builder.build("reset_password", to=given, context=RESET)

    assert expected == message["To"]


def test_a_message_needs_a_recipient(builder: MessageBuilder) -> None:
    """Empty to, cc and bcc together are InvalidMessage."""
    with pytest.raises(InvalidMessage, match="no recipient"):
        builder.build("reset_password", to=[], context=RESET)


# -- Bcc and the envelope -------------------------------------------------------------------


def test_bcc_reaches_the_envelope_but_not_the_wire(builder: MessageBuilder) -> None:
    """envelope() includes Bcc; wire_bytes() carries no Bcc header and uses CRLF."""
    message = builder.build(
        "reset_password",
        to="bob@example.com",
        cc=["c@example.com", "bob@example.com"],
        bcc="Secret Sam <sam@example.net>",
        context=RESET,
    )

    wire = wire_bytes(message)

    assert (
        "no-reply@acme.example",
        ("bob@example.com", "c@example.com", "sam@example.net"),
    ) == envelope(message)
    assert b"sam@example.net" not in wire
    assert b"\nBcc" not in wire
    assert b"\r\n" in wire
    assert b"\n" not in wire.replace(b"\r\n", b"")
    assert "Secret Sam <sam@example.net>" == message["Bcc"]  # the message itself is unchanged


def test_bcc_is_never_transmitted_by_smtplib(builder: MessageBuilder, smtp_sink: Any) -> None:
    """smtplib.send_message delivers to the Bcc recipient without sending the Bcc header."""
    message = builder.build(
        "reset_password", to="bob@example.com", bcc="sam@example.net", context=RESET
    )

    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.send_message(message)
        sender, recipients = envelope(message)
        client.sendmail(sender, list(recipients), wire_bytes(message))
    captured = smtp_sink.wait_for(2)

    assert [("bob@example.com", "sam@example.net")] * 2 == [c.envelope_to for c in captured]
    assert [False, False] == [b"sam@example.net" in c.raw for c in captured]
    assert [None, None] == [c.message["Bcc"] for c in captured]


def test_envelope_reads_messages_made_elsewhere() -> None:
    """envelope() works on compat32 messages too, and refuses a message without recipients."""
    legacy = email.message_from_string(
        "From: a@x.example\nTo: B <b@y.example>, c@y.example\nBcc: d@z.example\n\nhi\n"
    )
    lonely = email.message_from_string("From: a@x.example\n\nhi\n")

    assert ("a@x.example", ("b@y.example", "c@y.example", "d@z.example")) == envelope(legacy)
    with pytest.raises(InvalidMessage, match="no recipient"):
        envelope(lonely)


# -- templates: sources, overrides, errors --------------------------------------------------


def test_app_templates_override_bundled_ones_of_the_same_file_name(app_templates: Path) -> None:
    """An app's reset_password.txt replaces the bundled one; the bundled HTML stays."""
    write(
        app_templates, {"reset_password.txt": "{% block subject %}Ours{% endblock %}Go: {{ url }}"}
    )
    builder = MessageBuilder(app_templates, sender=SENDER)

    message = builder.build("reset_password", to="b@example.com", context=RESET)

    assert "Ours" == message["Subject"]
    assert f"Go: {RESET['url']}\n" == text_of(message)
    assert "Choose a new password" in html_of(message)


def test_templates_may_be_a_loader_or_an_environment_whose_settings_are_kept() -> None:
    """A DictLoader works; an Environment keeps its filters and its globals stay untouched."""
    files = {"hi.txt": "{% block subject %}Hi{% endblock %}{{ who | shout }}"}
    environment = jinja2.Environment(loader=jinja2.DictLoader(files), autoescape=True)
    environment.filters["shout"] = lambda value: f"{value}!".upper()
    globals_before = dict(environment.globals)

    from_env = MessageBuilder(environment, sender=SENDER)
    from_loader = MessageBuilder(
        jinja2.DictLoader({"hi.txt": files["hi.txt"].replace(" | shout", "")}), sender=SENDER
    )

    assert "BOB & CO!\n" == text_of(
        from_env.build("hi", to="b@example.com", context={"who": "bob & co"})
    )
    assert "bob & co\n" == text_of(
        from_loader.build("hi", to="b@example.com", context={"who": "bob & co"})
    )
    assert globals_before == environment.globals
    assert (
        "Reset your Acme password"
        == from_env.build("reset_password", to="b@example.com", context=RESET)["Subject"]
    )


def test_html_is_autoescaped_and_text_is_not(builder: MessageBuilder) -> None:
    """A name with markup is escaped in the HTML part and verbatim in the text part."""
    message = builder.build(
        "reset_password", to="b@example.com", context={**RESET, "user_name": "<b>Bo & Co</b>"}
    )

    assert "&lt;b&gt;Bo &amp; Co&lt;/b&gt;" in html_of(message)
    assert "<b>Bo & Co</b>" not in html_of(message)
    assert "Hello <b>Bo & Co</b>," in text_of(message)


@pytest.mark.parametrize("missing", ["url", "expires_minutes", "app_name"])
def test_an_undefined_variable_names_the_template_and_the_variable(
    builder: MessageBuilder, missing: str
) -> None:
    """Undefined variables are TemplateErrors naming template, line and variable."""
    context = {key: value for key, value in RESET.items() if key != missing}

    with pytest.raises(
        TemplateError, match=rf"template 'reset_password\.\w+'.*'{missing}'"
    ) as info:
        builder.build("reset_password", to="b@example.com", context=context)
    assert str(info.value.template).startswith("reset_password.")
    assert "line " in str(info.value)


def test_a_missing_template_names_the_files_it_tried(builder: MessageBuilder) -> None:
    """A template with neither file says which names it tried, and where."""
    with pytest.raises(TemplateError, match=r"tried welcome\.txt and welcome\.html") as info:
        builder.build("welcome", to="b@example.com")
    assert "welcome" == info.value.template


def test_syntax_errors_and_missing_includes_are_template_errors(app_templates: Path) -> None:
    """A broken template is a TemplateError with its name and line, not a Jinja2 exception."""
    write(app_templates, {"broken.txt": "line\n{% if %}", "lost.txt": "{% include 'nope.txt' %}"})
    builder = MessageBuilder(app_templates, sender=SENDER)

    with pytest.raises(TemplateError, match=r"'broken\.txt' has a syntax error on line 2"):
        builder.build("broken", to="b@example.com", subject="s")
    with pytest.raises(TemplateError, match=r"nope\.txt"):
        builder.build("lost", to="b@example.com", subject="s")


@pytest.mark.parametrize(
    ("templates", "message"),
    [("/does/not/exist", "does not exist"), (42, "must be a folder path")],
)
def test_bad_template_sources_are_configuration_errors(templates: Any, message: str) -> None:
    """A missing folder or a wrong type fails when the builder is made."""
    with pytest.raises(ConfigurationError, match=message):
        MessageBuilder(templates, sender=SENDER)


# -- HTML only ------------------------------------------------------------------------------


def test_an_html_only_template_gets_a_derived_text_part(app_templates: Path) -> None:
    """HTML only: the text part keeps paragraphs, lists and links as 'text (url)'."""
    html = """<!DOCTYPE html><html lang="en"><head><title>T</title><style>p{}</style></head>
    <body><div style="display:none">preheader text</div>
    <h1>Welcome,   {{ name }}</h1>
    <p>Start <a href="https://a.example/start">here</a> or at
       <a href="https://a.example/">https://a.example/</a>.</p>
    <ul><li>one</li><li>two <b>bold</b></li></ul>
    <ol><li>first</li><li>second</li></ol>
    <p>Line<br>break</p><img src="cid:x" alt="[logo]"></body></html>"""
    write(app_templates, {"welcome.html": "{% block subject %}Welcome{% endblock %}" + html})
    builder = MessageBuilder(app_templates, sender=SENDER)

    message = builder.build("welcome", to="b@example.com", context={"name": "Bob"})

    assert (
        "Welcome, Bob\n\n"
        "Start here (https://a.example/start) or at https://a.example/.\n\n"
        "- one\n- two bold\n\n"
        "1. first\n2. second\n\n"
        "Line\nbreak\n\n[logo]\n"
    ) == text_of(message)
    assert ["multipart/alternative", "text/plain", "text/html"] == structure(message)


def test_html_to_text_handles_nested_lists_tables_and_stray_tags() -> None:
    """Nested lists indent, table cells break lines, unmatched end tags are ignored."""
    html = (
        "<table><tr><td>a</td><td>b</td></tr></table></span>"
        "<ul><li>x<ul><li>y</li></ul></li></ul><a href='mailto:m@x.example'>m@x.example</a> "
        "<a href='#top'>top</a> <a href='https://z.example'></a>"
    )

    assert "a\nb\n\n- x\n  - y\n\nm@x.example top https://z.example\n" == html_to_text(html)


# -- attachments ----------------------------------------------------------------------------


def test_attachments_make_multipart_mixed_around_the_alternative(
    builder: MessageBuilder,
) -> None:
    """Attachments go after the multipart/alternative in a multipart/mixed."""
    files = [
        Attachment(filename="report.pdf", content=b"%PDF-1.4 ..."),
        Attachment(filename="notes.csv", content=b"a,b\n1,2\n", content_type="text/csv"),
    ]
    message = roundtrip(
        builder.build("reset_password", to="b@example.com", context=RESET, attachments=files)
    )

    assert [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
        "text/csv",
    ] == structure(message)
    assert [("report.pdf", b"%PDF-1.4 ..."), ("notes.csv", b"a,b\n1,2\n")] == [
        (part.get_filename(), part.get_payload(decode=True)) for part in message.iter_attachments()
    ]


def test_inline_images_go_in_multipart_related_with_the_html(builder: MessageBuilder) -> None:
    """An attachment with content_id is an inline image next to the HTML, found by cid."""
    logo = Attachment(filename="logo.png", content=PNG, content_id="logo")
    message = roundtrip(
        builder.build("reset_password", to="b@example.com", context=RESET, attachments=[logo])
    )

    related: Any = message.get_payload()[1]  # type: ignore[index]
    image: Any = related.get_payload()[1]

    assert [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ] == structure(message)
    assert "text/html" == related.get_param("type")
    assert ("<logo>", "inline", PNG) == (
        image["Content-ID"],
        image.get_content_disposition(),
        image.get_payload(decode=True),
    )


def test_inline_images_need_an_html_part(app_templates: Path) -> None:
    """A text-only template cannot carry an inline image."""
    write(app_templates, {"t.txt": "text"})
    builder = MessageBuilder(app_templates, sender=SENDER)
    logo = Attachment(filename="logo.png", content=PNG, content_id="logo")

    with pytest.raises(InvalidMessage, match="need an HTML part"):
        builder.build("t", to="b@example.com", subject="s", attachments=[logo])


@pytest.mark.parametrize(
    "arguments",
    [
        {"filename": "../etc/passwd", "content": b""},
        {"filename": "", "content": b""},
        {"filename": "a.txt", "content": "text, not bytes"},
        {"filename": "a.txt", "content": b"", "content_type": "nonsense"},
        {"filename": "a.txt", "content": b"", "content_type": "multipart/mixed"},
        {"filename": "a.png", "content": b"", "content_id": "<logo>"},
        {"filename": "a.png", "content": b"", "content_id": "lo go"},
    ],
)
def test_bad_attachments_are_invalid_messages(arguments: dict[str, Any]) -> None:
    """Paths, empty names, text content, bad types and bad content ids are refused."""
    with pytest.raises(InvalidMessage):
        Attachment(**arguments)


def test_attachment_type_is_guessed_from_the_file_name() -> None:
    """content_type defaults to the file name's MIME type, else application/octet-stream."""
    assert ["application/pdf", "image/png", "application/octet-stream"] == [
        Attachment(filename=name, content=bytearray(b"x")).content_type
        for name in ("a.pdf", "b.png", "c.unknownext")
    ]


# -- translations ---------------------------------------------------------------------------


def test_the_bundled_templates_render_in_simplified_chinese() -> None:
    """locale='zh_Hans' translates subject, text and HTML and sets lang='zh-Hans'."""
    builder = MessageBuilder(sender=SENDER, locale="zh_Hans")

    message = builder.build(
        "reset_password", to="b@example.com", context={**RESET, "user_name": "张三"}
    )

    assert "重置您的 Acme 密码" == message["Subject"]
    assert text_of(message).startswith("张三，您好：\n")
    assert "此链接将在 10 分钟后失效。" in text_of(message)
    assert '<html lang="zh-Hans"' in html_of(message)
    assert "设置新密码" in html_of(message)
    assert "zh_Hans" == builder.locale


@pytest.mark.parametrize("alias", ["zh-Hans", "zh_hans", "zh", "zh_CN"])
def test_chinese_locale_aliases_pick_the_bundled_catalog(alias: str) -> None:
    """Common spellings of Simplified Chinese select the zh_Hans catalog."""
    assert "zh_Hans" == MessageBuilder(sender=SENDER, locale=alias).locale


def test_english_is_the_default_with_lang_en_and_plural_forms(builder: MessageBuilder) -> None:
    """Without a locale the templates are English, lang='en', with correct plurals."""
    one = builder.build(
        "reset_password", to="b@example.com", context={**RESET, "expires_minutes": 1}
    )

    assert '<html lang="en"' in html_of(one)
    assert "The link expires in 1 minute." in text_of(one)


class Shouting(gettext.NullTranslations):
    """An app's own catalog: translates its text to upper case, placeholders kept."""

    def gettext(self, message: str) -> str:
        return message.upper().replace("%(NAME)S", "%(name)s")


def test_an_apps_translations_apply_to_its_own_templates(app_templates: Path) -> None:
    """translations= enables {% trans %} in app templates, for any locale."""
    write(app_templates, {"hi.txt": "{% trans name=name %}Hello {{ name }}{% endtrans %}"})
    builder = MessageBuilder(app_templates, sender=SENDER, locale="de", translations=Shouting())

    message = builder.build("hi", to="b@example.com", subject="s", context={"name": "Bob"})

    assert "HELLO Bob\n" == text_of(message)
    assert "de" == builder.locale


def test_an_unknown_locale_without_translations_is_a_configuration_error() -> None:
    """A locale we ship no catalog for needs translations=."""
    with pytest.raises(ConfigurationError, match=r"'fr'.*translations="):
        MessageBuilder(sender=SENDER, locale="fr")


def test_bundled_chinese_wins_over_app_translations_for_bundled_strings() -> None:
    """The app's catalog is a fallback: bundled strings keep their shipped translation."""
    builder = MessageBuilder(sender=SENDER, locale="zh_Hans", translations=Shouting())

    message = builder.build("reset_password", to="b@example.com", context=RESET)

    assert "重置您的 Acme 密码" == message["Subject"]


def test_public_names_are_reexported() -> None:
    """The messages API is importable from the package root."""
    assert (mailreset.MessageBuilder, mailreset.Attachment) == (MessageBuilder, Attachment)


def test_builder_repr_names_its_sources() -> None:
    """The repr shows the template source, sender and locale."""
    assert (
        "MessageBuilder(templates='the bundled templates', "
        "sender='Acme <no-reply@acme.example>', locale='en')"
    ) == repr(MessageBuilder(sender=SENDER))
