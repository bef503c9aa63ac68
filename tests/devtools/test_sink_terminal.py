"""The index entry's fast summary agrees with the capture core's full parse."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from devtools.sink.summary import summarize

from mailreset.testing import CapturedMessage

LINK = "https://app.example.test/reset/tok.en?next=%2Fhome&a=1"


def _plain() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.test>"
    message["Subject"] = "Reset your password"
    message.set_content(f"Open {LINK}.")
    return message


def _alternative_qp() -> EmailMessage:
    message = _plain()
    message.add_alternative(
        f'<p>{"long line " * 20}<a href="{LINK.replace("&", "&amp;")}">Reset</a></p>',
        subtype="html",
    )
    return message


def _base64_chinese() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "应用 <app@example.test>"
    message["Subject"] = "重置您的密码"
    message.set_content(f"请在十分钟内打开 {LINK} 重置密码。" * 3, cte="base64")
    return message


def _mixed_with_attachment() -> EmailMessage:
    message = _alternative_qp()
    message.add_attachment(
        b"https://not-a-link.test/in/an/attachment", maintype="text", subtype="plain"
    )
    return message


@pytest.mark.parametrize(
    "build", [_plain, _alternative_qp, _base64_chinese, _mixed_with_attachment]
)
def test_fast_fields_match_the_full_parse(build: object) -> None:
    """Subject, From and links from the fast MIME walk equal those of CapturedMessage."""
    raw = build().as_bytes()  # type: ignore[operator]
    captured = CapturedMessage.from_bytes(raw, envelope_from="", envelope_to=())

    summary = summarize(raw, "", ())
    assert (captured.subject, captured.from_, captured.links) == (
        summary.subject,
        summary.from_header,
        summary.links,
    )
    assert LINK in summary.links
