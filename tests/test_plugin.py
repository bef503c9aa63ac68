"""The pytest plugin, run the way a user's project runs it: through pytester sub-runs."""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

USES_BOTH_FIXTURES = """
import smtplib
from email.message import EmailMessage

from mailreset.testing import extract_token


def reset_mail(to):
    message = EmailMessage()
    message["From"] = "App <noreply@example.test>"
    message["To"] = to
    message["Subject"] = "Reset your password"
    message.set_content("Open https://app.example.test/reset/tok123 within 10 minutes.")
    return message


def test_outbox_records(mail_outbox):
    mail_outbox.send(reset_mail("ada@example.test"))
    assert 1 == len(mail_outbox)
    assert "tok123" == extract_token(mail_outbox.last, "https://app.example.test/reset/")
    mail_outbox.assert_sent(to="ada@example.test", subject="Reset your password")


def test_outbox_is_fresh_per_test(mail_outbox):
    assert [] == mail_outbox.messages


def test_smtp_sink_captures(smtp_sink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.send_message(reset_mail("bob@example.test"))
    (captured,) = smtp_sink.wait_for(1)
    assert ("bob@example.test",) == captured.envelope_to
    assert "tok123" == extract_token(captured, "https://app.example.test/reset/")
"""

FAILING_EXPECTATION = """
from email.message import EmailMessage


def test_expects_mail_to_ada(mail_outbox):
    for to, subject in [("bob@example.test", "Welcome"), ("cy@example.test", "Receipt")]:
        message = EmailMessage()
        message["From"] = "noreply@example.test"
        message["To"] = to
        message["Subject"] = subject
        message.set_content("hello")
        mail_outbox.send(message)
    mail_outbox.assert_sent(to="ada@example.test")
"""


def test_fixtures_work_in_a_throwaway_project(pytester: pytest.Pytester) -> None:
    """A project that only installs mailreset gets both fixtures, and its tests pass."""
    pytester.makepyfile(test_mail=USES_BOTH_FIXTURES)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)


def test_a_failing_expectation_lists_the_messages_sent(pytester: pytest.Pytester) -> None:
    """A failed assert_sent fails the test and its report lists every message sent."""
    pytester.makepyfile(test_expectation=FAILING_EXPECTATION)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r"E\s+" + re.escape("AssertionError: expected a message with to='ada@example.test'"),
            r"E\s+" + re.escape("1. from='noreply@example.test' to=['bob@example.test']"),
            r"E\s+" + re.escape("2. from='noreply@example.test' to=['cy@example.test']"),
        ]
    )
    assert "_outbox.py" not in result.stdout.str()


def test_mail_outbox_works_without_aiosmtpd(pytester: pytest.Pytester) -> None:
    """mail_outbox needs no aiosmtpd: it passes where importing aiosmtpd fails."""
    pytester.makeconftest("import sys\nsys.modules['aiosmtpd'] = None  # import fails\n")
    pytester.makepyfile(
        test_no_aiosmtpd="""
import sys
from email.message import EmailMessage

def test_outbox(mail_outbox):
    message = EmailMessage()
    message["From"] = "noreply@example.test"
    message["To"] = "ada@example.test"
    message.set_content("hello")
    mail_outbox.send(message)
    assert 1 == len(mail_outbox)
    assert sys.modules["aiosmtpd"] is None
"""
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


def test_plugin_adds_no_autouse_fixture(pytester: pytest.Pytester) -> None:
    """A test that asks for nothing gets none of the plugin's fixtures."""
    pytester.makepyfile(
        test_plain=(
            "def test_plain(request):\n    assert 'mail_outbox' not in request.fixturenames\n"
        )
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)
