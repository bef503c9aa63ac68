"""The builder's caching policy writes exactly what email.policy.default writes."""

from __future__ import annotations

import copy
import email
import email.policy
import pickle
import re
from datetime import datetime, timezone
from email.headerregistry import Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailreset import MessageBuilder
from mailreset._policy import CheckedAddresses, caching_policy

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
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40),
        min_size=1,
        max_size=4,
    ),
    linesep=st.sampled_from(["\n", "\r\n"]),
)
def test_address_headers_fold_like_the_default_policy(names: list[str], linesep: str) -> None:
    """Lazily parsed address headers fold exactly as policy.default folds the same value."""
    addresses = CheckedAddresses(
        Address(name.strip(), f"user{number}", "example.com") for number, name in enumerate(names)
    )
    ours = caching_policy().header_factory("To", addresses)
    theirs = email.policy.default.header_factory("To", ", ".join(map(str, addresses)))
    policy = email.policy.default.clone(linesep=linesep)

    assert theirs.fold(policy=policy) == ours.fold(policy=policy)
    assert str(theirs) == str(ours)
    assert [a.addr_spec for a in theirs.addresses] == [a.addr_spec for a in ours.addresses]


def test_built_messages_survive_pickle_and_deepcopy() -> None:
    """A built message pickles and deep-copies (a spool may store it) to the same bytes."""
    builder = MessageBuilder(sender="Acme <a@acme.example>", clock=lambda: NOW)
    message = builder.build("reset_password", to="Bob <bob@example.com>", context=RESET)
    raw = message.as_bytes()

    assert raw == pickle.loads(pickle.dumps(message)).as_bytes()
    assert raw == copy.deepcopy(message).as_bytes()
