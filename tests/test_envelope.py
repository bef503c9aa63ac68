"""Envelope: its wire bytes are byte for byte what the email package itself produces, and
every envelope, however made, passes the same checks."""

from __future__ import annotations

import email.policy
import email.utils
import random
import sys
from collections.abc import Callable
from email.message import EmailMessage, Message

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailreset._envelope import addresses
from mailreset.errors import InvalidMessage
from mailreset.transports import Envelope
from tests.mail_factory import make_message

HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" \t=?;\"'<>@,"),
    max_size=120,
)


def _outcome(serialise: Callable[[], bytes]) -> bytes | str:
    """The bytes, or "refused" where serialising raises (Envelope.from_message: InvalidMessage)."""
    try:
        return serialise()
    except (InvalidMessage, ValueError, LookupError):
        return "refused"


def _stdlib_bytes(message: Message) -> bytes:
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


@settings(max_examples=300, deadline=None)
@given(
    subject=HEADER_TEXT,
    message_id=HEADER_TEXT,
    keyword=HEADER_TEXT,
    content_type=st.sampled_from(["text/plain", "text/html", "application/x-bench"]),
    parameter=st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",))),
)
# CPython's Message-ID parser raises IndexError (not HeaderParseError) for a lone "<".
@example(subject="", message_id="<", keyword="", content_type="text/plain", parameter="")
def test_headers_fold_as_the_policy_folds_them(
    subject: str, message_id: str, keyword: str, content_type: str, parameter: str
) -> None:
    """Short ASCII headers written as they are come out exactly as the policy folds them."""
    message = EmailMessage()
    message["From"] = "App <app@example.com>"
    message["To"] = "user@example.com"
    for name, value in (("Subject", subject), ("Message-ID", message_id), ("X-Key", keyword)):
        try:
            message[name] = value
        # The policy refuses some values outright (a lone CR, say); its Message-ID parser
        # fails with IndexError on some (a lone "<"): either way the header is never set.
        except (ValueError, IndexError):
            continue
    message.set_content("body\n")
    try:
        message.replace_header("Content-Type", f"{content_type}; name={parameter!r}")
    except ValueError:
        return

    assert _outcome(lambda: _stdlib_bytes(message)) == _outcome(
        lambda: Envelope.from_message(message).data
    )


def test_multipart_boundary_is_set_and_output_matches() -> None:
    """A new boundary is recorded on the message, as the stdlib does, and nothing else differs."""
    message = make_message(1)
    message.add_alternative("<p>hello</p>", subtype="html")
    message.add_attachment(b"\0" * 100, maintype="application", subtype="octet-stream")

    data = Envelope.from_message(message).data

    assert message.get_boundary() is not None
    assert _stdlib_bytes(message) == data


def test_boundary_avoids_text_that_contains_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A boundary whose delimiter already starts a line of the parts is drawn again.

    The stdlib's own check misses a delimiter line that ends in CRLF (the wire form).
    """
    # The stdlib draws its boundaries from random.randrange: pin it, so its candidate is
    # known and can be planted in the text.
    monkeypatch.setattr(random, "randrange", lambda stop: 0)
    taken = "=" * 15 + "0" * len(repr(sys.maxsize - 1)) + "=="
    message = make_message(1)
    message.set_content(f"x\n--{taken}\nstill the text part\n")
    message.add_alternative("<p>hello</p>", subtype="html")

    data = Envelope.from_message(message).data

    assert message.get_boundary() not in (None, taken)
    assert _stdlib_bytes(message) == data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert ["text/plain", "text/html"] == [part.get_content_type() for part in parsed.iter_parts()]


def test_compat32_messages_take_the_stdlib_path() -> None:
    """A legacy ``Message`` (compat32) serialises exactly as ``as_bytes`` does."""
    message = Message()
    message["From"] = "app@example.com"
    message["To"] = "user@example.com"
    message["Subject"] = "a subject long enough to need folding " * 3
    message.set_payload("body\n")

    assert message.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n")) == (
        Envelope.from_message(message).data
    )


@settings(max_examples=200, deadline=None)
@given(
    date=st.sampled_from(["Mon, 20 Nov 1995 19:12:08 -0500", "not a date", "1 Jan 2024"]),
    body=st.lists(st.sampled_from(["line", "\n", "\r\n", "\r", " x", ".", "é"]), max_size=40),
    html=st.booleans(),
)
def test_dates_and_line_ends_come_out_as_in_the_stdlib(date: str, body: list[str], html: bool):
    """Dates (parsed or not) and payloads with mixed line ends serialise as ``as_bytes`` does."""
    message = make_message(1)
    message["Date"] = date
    message.set_content("".join(body) or "x")
    if html:
        message.add_alternative(f"<p>{''.join(body)}</p>", subtype="html")

    assert _stdlib_bytes(message) == Envelope.from_message(message).data


@given(
    names=st.lists(
        st.sampled_from(['"Ann Lee" <ann@example.com>', "bob@example.com", "Bo <b.o@x.org>"]),
        min_size=1,
        max_size=4,
    )
)
def test_recipients_from_parsed_headers_match_a_fresh_parse(names: list[str]) -> None:
    """Recipients read from policy.default's parsed headers equal ``getaddresses`` on the text."""
    message = make_message(1)
    del message["To"]
    message["To"] = ", ".join(names)
    message["Cc"] = names[0]

    expected = [
        address
        for _, address in email.utils.getaddresses([str(message["To"]), str(message["Cc"])])
    ]

    assert expected == addresses(message, "To", "Cc")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"sender": "app@example.com\r\nRCPT TO:<x@evil.test>"}, "not an e-mail address"),
        ({"sender": "no-at-sign"}, "not an e-mail address"),
        ({"recipients": ()}, "no recipient"),
        ({"recipients": ("a@example.com", "<b@example.com>")}, "not an e-mail address"),
        ({"recipients": (None,)}, "not an e-mail address"),
        ({"data": b""}, "bytes"),
        ({"data": "text, not bytes"}, "bytes"),
        ({"message_id": "<a@b>\r\nBcc: x@evil.test"}, "Message-ID"),
        ({"recipients": ("zoë@example.com",), "smtputf8": False}, "SMTPUTF8|smtputf8"),
    ],
)
def test_every_envelope_is_checked_however_it_is_made(
    fields: dict[str, object], match: str
) -> None:
    """An envelope made by hand (or read back from a spool or a queue) is checked like one
    made from a message: InvalidMessage, a ValueError, naming the problem."""
    good: dict[str, object] = {
        "sender": "app@example.com",
        "recipients": ("user@example.com",),
        "data": b"Subject: hi\r\n\r\nbody\r\n",
    }
    with pytest.raises(InvalidMessage, match=match):
        Envelope(**{**good, **fields})  # type: ignore[arg-type]


def test_smtputf8_is_worked_out_from_the_addresses() -> None:
    """Left out, smtputf8 is True exactly when an address is not ASCII; a lone string is one
    recipient."""
    data = b"Subject: hi\r\n\r\nbody\r\n"

    assert not Envelope(sender="a@example.com", recipients="b@example.com", data=data).smtputf8
    unicode = Envelope(sender="a@example.com", recipients="zoë@example.com", data=data)
    assert unicode.smtputf8
    assert ("zoë@example.com",) == unicode.recipients


def test_from_message_takes_only_messages() -> None:
    """Bytes, text or None are a TypeError, not an error from deep in the email package."""
    for value in (b"Subject: x\r\n\r\n", "Subject: x", None):
        with pytest.raises(TypeError, match="Message"):
            Envelope.from_message(value)  # type: ignore[arg-type]


def test_from_message_reads_the_envelope_and_keeps_the_message() -> None:
    """Sender, recipients (Bcc too), Message-ID and smtputf8 come from the headers; the
    caller's message keeps its Bcc."""
    message = make_message(7, cc="cc@example.com", bcc="hidden@example.com")

    envelope = Envelope.from_message(message)

    assert "app@example.com" == envelope.sender
    assert ("user@example.com", "cc@example.com", "hidden@example.com") == envelope.recipients
    assert "<7.test@example.com>" == envelope.message_id
    assert not envelope.smtputf8
    assert b"hidden@example.com" not in envelope.data
    assert envelope.data.endswith(b"\r\n")
    assert "hidden@example.com" == message["Bcc"]


def test_no_message_id_is_none() -> None:
    """A message without a Message-ID header gives message_id None."""
    message = make_message(8)
    del message["Message-ID"]

    assert Envelope.from_message(message).message_id is None


def test_hypothesis_runs_without_a_local_example_database() -> None:
    """The suite's profile keeps no example database: no run replays another run's failures."""
    assert None is settings().database
