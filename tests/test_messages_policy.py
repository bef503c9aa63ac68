"""The builder's caching policy writes exactly what email.policy.default writes."""

from __future__ import annotations

import copy
import email
import email.headerregistry
import email.policy
import logging
import pickle
import re
import smtplib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailreset import MessageBuilder, _policy
from mailreset._policy import CachingHeaderRegistry, CheckedAddresses, make_caching_policy

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
RESET = {"url": "https://acme.example/reset/t0k", "expires_minutes": 10, "app_name": "Acme"}
NAMES = [
    "",
    "Bob",
    "Bob Smith",
    "Bob  Smith",
    "Smith, Bob",
    "Bob J. Smith",
    'Bob "The Builder" Smith',
    "back\\slash",
    "Zoë Ünïcode",
    "张三",
    "=?utf-8?q?Bob?=",
    "A" * 90,
    "Reader 12345678901234567890123456789012345678901234567890",
]


def _normalised(raw: bytes) -> bytes:
    """Message-IDs and MIME boundaries differ by design; everything else must match."""
    raw = re.sub(rb"<[0-9.]+@", b"<ID@", raw)
    boundaries = set(re.findall(rb'boundary="([^"]+)"', raw))
    for number, boundary in enumerate(sorted(boundaries)):
        raw = raw.replace(boundary, b"BOUNDARY%d" % number)
    return raw


def _with_default_policy(builder: MessageBuilder) -> MessageBuilder:
    """The same builder, but making messages with the stock email.policy.default."""
    reference = copy.copy(builder)
    reference._policy = email.policy.default  # type: ignore[assignment]
    return reference


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("locale", [None, "zh_Hans"])
def test_built_messages_are_byte_identical_to_the_default_policy(
    name: str, locale: str | None
) -> None:
    """Headers made and folded by the caching policy match policy.default's, byte for byte."""
    builder = MessageBuilder(
        sender=Address(name, "no-reply", "acme.example"), locale=locale, clock=lambda: NOW
    )
    reference = _with_default_policy(builder)
    to = [Address(name, "bob", "example.com"), "carol@example.org"]
    options: dict[str, Any] = {"to": to, "cc": to[:1], "reply_to": to, "context": RESET}
    expected = _normalised(reference.build("reset_password", **options).as_bytes())
    for _ in range(2):  # the second build is served from the caches
        message = builder.build("reset_password", **options)

        assert expected == _normalised(message.as_bytes())


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40)
        | st.sampled_from(["=?utf-8?q?x?=", "a =?utf-8?b?w6k=?= b", 'Smith, "Bob"', "A" * 80]),
        min_size=1,
        max_size=4,
    ),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
def test_address_headers_fold_like_the_default_policy(names: list[str], linesep: str) -> None:
    """Lazily parsed address headers fold exactly as policy.default folds the same addresses."""
    addresses = CheckedAddresses(
        Address(name.strip(), f"user{number}", "example.com") for number, name in enumerate(names)
    )
    ours = make_caching_policy().header_factory("To", addresses)
    theirs = email.policy.default.header_factory("To", list(addresses))
    policy = email.policy.default.clone(linesep=linesep)

    assert theirs.fold(policy=policy) == ours.fold(policy=policy)
    assert str(theirs) == str(ours)
    assert theirs.addresses == ours.addresses
    assert theirs.groups == ours.groups
    if "=?" not in str(ours):  # else parsing the text decodes what looks like encoded words
        parsed = email.policy.default.header_factory("To", str(ours))
        assert parsed.fold(policy=policy) == ours.fold(policy=policy)
        assert [a.addr_spec for a in parsed.addresses] == [a.addr_spec for a in ours.addresses]


def test_built_messages_survive_pickle_and_deepcopy() -> None:
    """A built message pickles and deep-copies (a spool may store it) to the same bytes."""
    builder = MessageBuilder(sender="Acme <a@acme.example>", clock=lambda: NOW)
    message = builder.build("reset_password", to="Bob <bob@example.com>", context=RESET)
    raw = message.as_bytes()

    assert raw == pickle.loads(pickle.dumps(message)).as_bytes()
    assert raw == copy.deepcopy(message).as_bytes()


# -- every header, not only addresses ----------------------------------------------------------

HEADER_NAMES = [
    "Subject",
    "X-Campaign",
    "Date",
    "Message-ID",
    "To",
    "Sender",
    "MIME-Version",
    "Content-Type",
    "Content-Disposition",
    "Content-Transfer-Encoding",
]
FOLDING = [
    email.policy.default,
    email.policy.default.clone(linesep="\r\n"),
    email.policy.default.clone(max_line_length=40),
    email.policy.default.clone(max_line_length=None),
    email.policy.default.clone(linesep="\r\n", utf8=True),
]
# Header text with what makes folding interesting: specials, quotes, encoded words, long runs.
_PIECES = st.sampled_from(
    [
        " ",
        "  ",
        "\t",
        ",",
        ";",
        "<",
        ">",
        '"',
        "(",
        ")",
        "@",
        "=?",
        "?=",
        "=?utf-8?q?caf=C3=A9?=",
        "=?utf-8?b?w6k=?=",
        "text/plain",
        "charset=utf-8",
        'filename="a b.pdf"',
        "bob@example.com",
        "Bob <bob@example.com>",
        "1.0",
        "base64",
        "<id.1@acme.example>",
        "Wed, 04 Mar 2026 05:06:07 +0000",
        "x" * 50,
        "é",
        "张三",
    ]
)
HEADER_VALUES = st.one_of(
    st.lists(
        _PIECES | st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=8)
    ).map("".join),
    st.text(max_size=120).filter(lambda text: "\r" not in text and "\n" not in text),
)


def _attributes(header: Any) -> dict[str, Any]:
    """What a header tells its reader, beyond its text."""
    seen: dict[str, Any] = {"str": str(header), "defects": [type(d) for d in header.defects]}
    for name in ("addresses", "groups", "datetime", "params", "content_type", "cte", "version"):
        if hasattr(header, name):
            value = getattr(header, name)
            seen[name] = dict(value) if name == "params" else value
    seen["tree"] = str(header._parse_tree)
    return seen


def _folds(header: Any) -> list[str | type[BaseException]]:
    folds: list[str | type[BaseException]] = []
    for policy in FOLDING:
        try:
            folds.append(header.fold(policy=policy))
        except Exception as error:
            folds.append(type(error))
    return folds


@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES), value=HEADER_VALUES)
def test_every_header_reads_and_folds_like_the_default_policy(name: str, value: str) -> None:
    """Any header value: the light header has policy.default's text, attributes and folds."""
    try:
        theirs = email.policy.default.header_factory(name, value)
    except Exception as error:
        with pytest.raises(type(error)):
            make_caching_policy().header_factory(name, value)
        return
    registry = make_caching_policy().header_factory
    for ours in (registry(name, value), registry(name, value)):  # made, then from the cache
        assert _attributes(theirs) == _attributes(ours)
        assert _folds(theirs) == _folds(ours)
        assert _folds(theirs) == _folds(pickle.loads(pickle.dumps(ours)))
        assert _folds(theirs) == _folds(copy.deepcopy(ours))


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-7, minutes=-30))]),
    )
)
def test_date_headers_made_from_datetimes_fold_like_the_default_policy(moment: datetime) -> None:
    """A Date header made from a datetime keeps its datetime and folds as policy.default's."""
    theirs = email.policy.default.header_factory("Date", moment)
    ours = make_caching_policy().header_factory("Date", moment)

    assert _attributes(theirs) == _attributes(ours)
    assert _folds(theirs) == _folds(ours)


def test_headers_of_unknown_classes_keep_their_parse_tree() -> None:
    """A header class someone registered is left as the stdlib made it (its tree is kept)."""

    class Shouting(email.headerregistry.UnstructuredHeader):
        @classmethod
        def parse(cls, value: str, kwds: dict[str, Any]) -> None:
            super().parse(value.upper(), kwds)

    policy = make_caching_policy()
    policy.header_factory.map_to_type("X-Shout", Shouting)  # type: ignore[attr-defined]
    header = policy.header_factory("X-Shout", "hello there")

    assert "X-Shout: HELLO THERE\n" == header.fold(policy=email.policy.default)
    assert "HELLO THERE" == str(header._parse_tree)


# -- built messages behave like any other EmailMessage ----------------------------------------


def _builders() -> tuple[MessageBuilder, MessageBuilder]:
    builder = MessageBuilder(sender="Acme <a@acme.example>", clock=lambda: NOW)
    return builder, _with_default_policy(builder)


BUILD = {"to": ["Bob <bob@example.com>", "carol@example.org"], "context": RESET}
MUTATIONS: dict[str, Any] = {
    "replace To": lambda m: m.replace_header("To", "Dave <dave@example.net>"),
    "delete and set Subject": lambda m: (m.__delitem__("Subject"), m.__setitem__("Subject", "Hi")),
    "add a header": lambda m: m.add_header("X-Tag", "reset", kind="a b"),
    "long Subject": lambda m: m.replace_header("Subject", "word " * 40 + "Zoë"),
    "new boundary": lambda m: m.set_boundary("=_another"),
    "charset param": lambda m: m.get_body(("plain",)).set_param("format", "flowed"),
    "new body": lambda m: m.get_body(("plain",)).set_content("changed\n"),
    "attachment": lambda m: m.add_attachment(b"%PDF", "application", "pdf", filename="a.pdf"),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=list(MUTATIONS))
def test_a_built_message_changed_afterwards_serialises_like_the_default_policy(
    mutate: Any,
) -> None:
    """Headers set, replaced or deleted after build are written as policy.default writes them."""
    builder, reference = _builders()
    ours = builder.build("reset_password", **BUILD)
    ours.as_bytes()  # folds remembered before the change must not leak into the output
    theirs = reference.build("reset_password", **BUILD)

    mutate(ours)
    mutate(theirs)

    assert _normalised(theirs.as_bytes()) == _normalised(ours.as_bytes())
    assert _normalised(theirs.as_string().encode()) == _normalised(ours.as_string().encode())


def test_a_built_message_reads_like_any_email_message() -> None:
    """Headers, addresses, body parts, copies and pickles read as with policy.default."""
    builder, _ = _builders()
    message = builder.build("reset_password", bcc="eve@example.com", **BUILD)

    assert isinstance(message, EmailMessage)
    assert ("bob@example.com", "carol@example.org") == tuple(
        address.addr_spec for address in message["To"].addresses
    )
    assert ("Bob", "") == tuple(group.addresses[0].display_name for group in message["To"].groups)
    assert NOW == message["Date"].datetime
    assert "multipart/alternative" == message.get_content_type()
    assert RESET["url"] in message.get_body(("plain",)).get_content()
    assert RESET["url"] in message.get_body(("html",)).get_content()
    assert [] == list(message.iter_attachments())
    assert {"charset": "utf-8"} == dict(message.get_body(("plain",))["Content-Type"].params)
    for other in (copy.copy(message), copy.deepcopy(message), pickle.loads(pickle.dumps(message))):
        assert message.as_bytes() == other.as_bytes()
        assert ["eve@example.com"] == [a.addr_spec for a in other["Bcc"].addresses]


def test_a_built_message_goes_through_smtplib_send_message(smtp_sink: Any) -> None:
    """smtplib.send_message reads the envelope from the light headers and strips Bcc."""
    builder, _ = _builders()
    message = builder.build("reset_password", bcc="eve@example.com", **BUILD)

    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.send_message(message)
    (received,) = smtp_sink.wait_for(1)

    assert ("bob@example.com", "carol@example.org", "eve@example.com") == received.envelope_to
    assert b"eve@" not in received.raw
    assert RESET["url"] in received.text


def test_message_ids_and_dates_do_not_fill_the_header_cache() -> None:
    """Headers that are new in every message are not kept by the policy once a message is gone."""
    builder, _ = _builders()
    for number in range(50):
        builder.build("reset_password", to=f"r{number}@example.com", context=RESET).as_bytes()

    cached = {name.lower() for name, _ in builder._policy.header_factory._headers}  # type: ignore[attr-defined]
    assert set() == cached & {"message-id", "date", "to"}


@pytest.mark.parametrize("domain", ["acme.example", "localhost", "x-y.example", "1.2.3.4", "a..b"])
def test_builder_message_ids_read_and_fold_like_the_default_policy(domain: str) -> None:
    """The builder's unparsed Message-IDs match policy.default's, defects included."""
    builder = MessageBuilder(sender="a@acme.example", domain=domain, clock=lambda: NOW)
    ours = builder.build("reset_password", to="bob@example.com", context=RESET)["Message-ID"]
    theirs = email.policy.default.header_factory("Message-ID", str(ours))

    assert _attributes(theirs) == _attributes(ours)
    assert _folds(theirs) == _folds(ours)


# -- the start-up self-check -----------------------------------------------------------------


@pytest.fixture
def fresh_self_check() -> Iterator[None]:
    """The self-check's verdict forgotten before and after the test, so it runs again."""
    _policy._caching_is_faithful.cache_clear()
    yield
    _policy._caching_is_faithful.cache_clear()


def test_the_builder_uses_the_caching_policy_where_it_passes_its_self_check(
    fresh_self_check: None,
) -> None:
    """On the Pythons mailreset supports the check passes: builders get the caching policy."""
    builder = MessageBuilder(sender="Acme <a@acme.example>", clock=lambda: NOW)

    assert _policy.faithful(make_caching_policy)
    assert isinstance(builder._policy.header_factory, CachingHeaderRegistry)


class _ChangedInternals(CachingHeaderRegistry):
    """What a Python whose header objects changed inside might do to the caching registry."""

    def __call__(self, name: str, value: Any) -> Any:
        raise AttributeError("'UnstructuredHeader' object has no attribute '_defects'")


BROKEN_CANDIDATES: dict[str, Any] = {
    "folds differently": lambda: make_caching_policy().clone(max_line_length=40),
    "raises": lambda: email.policy.default.clone(header_factory=_ChangedInternals()),
}


@pytest.mark.parametrize("candidate", BROKEN_CANDIDATES.values(), ids=list(BROKEN_CANDIDATES))
def test_a_failed_self_check_falls_back_to_the_default_policy(
    candidate: Any,
    fresh_self_check: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the caching policy writes or reads anything differently, builders use the default.

    Their mail is then exactly policy.default's, and reads back under policy.strict.
    """
    monkeypatch.setattr(_policy, "make_caching_policy", candidate)
    caplog.set_level(logging.DEBUG, logger="mailreset")

    builder = MessageBuilder(sender="Zoë <a@acme.example>", clock=lambda: NOW)
    message = builder.build("reset_password", cc="Smith, Bob <bob@example.com>", **BUILD)

    assert builder._policy is email.policy.default
    assert message.policy is email.policy.default
    assert "self-check" in caplog.text
    reference = MessageBuilder(sender="Zoë <a@acme.example>", clock=lambda: NOW)
    reference._policy = email.policy.default  # type: ignore[assignment]
    expected = reference.build("reset_password", cc="Smith, Bob <bob@example.com>", **BUILD)
    assert _normalised(expected.as_bytes()) == _normalised(message.as_bytes())
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.strict)
    assert ["bob@example.com", "carol@example.org"] == [
        address.addr_spec for address in parsed["To"].addresses
    ]
    assert ["bob@example.com"] == [address.addr_spec for address in parsed["Cc"].addresses]
    assert RESET["url"] in parsed.get_body(("plain",)).get_content()
