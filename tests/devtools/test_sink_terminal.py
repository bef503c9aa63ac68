"""The terminal block's fast summary agrees with the capture core's full parse."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from devtools.sink.terminal import _fast_fields

from mailreset.testing import CapturedMessage

LINK = "https://app.example.test/reset/tok.en?next=%2Fhome&a=1"


def _plain() -> EmailMessage:
    message = EmailMessage()
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
    """Subject and links from the fast MIME walk equal those of CapturedMessage."""
    raw = build().as_bytes()  # type: ignore[operator]
    captured = CapturedMessage.from_bytes(raw, envelope_from="", envelope_to=())

    assert (captured.subject, captured.links) == _fast_fields(raw)
    assert LINK in _fast_fields(raw)[1]
