"""``python -m devtools.sink`` started as a newcomer would, in a subprocess, fed by swaks."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_support import in_ci
from tests.devtools.support import ROOT, SinkProcess, reset_mail


@pytest.fixture
def sink_process(tmp_path: Path) -> Iterator[SinkProcess]:
    """A sink subprocess on free ports (port 0), stopped after the test."""
    process = SinkProcess("--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0")
    try:
        yield process
    finally:
        # stop() is safe to call again, and it joins the output threads even if it exited.
        process.stop()


def test_help_explains_the_options() -> None:
    """--help exits 0 and names the addresses, the store and the fault flags."""
    result = subprocess.run(
        [sys.executable, "-m", "devtools.sink", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert 0 == result.returncode
    for option in ("--smtp", "--http", "--store", "--max-size", "--tempfail-first", "--reject"):
        assert option in result.stdout
    assert "answer 451 to 20% of messages" in result.stdout
    assert "%%" not in result.stdout


def test_swaks_mail_shows_up_as_a_terminal_block(sink_process: SinkProcess) -> None:
    """A message sent by the real swaks prints its block, with the link, in the terminal."""
    swaks = shutil.which("swaks")
    if swaks is None:
        if in_ci():
            pytest.fail("swaks is missing under CI: apt-get install swaks", pytrace=False)
        pytest.skip("swaks is not installed (Debian: apt-get install swaks)")
    sent = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{sink_process.smtp_port}",
            "--from",
            "noreply@example.test",
            "--to",
            "ada@example.test",
            "--header",
            "Subject: Reset your password",
            "--body",
            "Open https://app.example.test/reset/tok123 within 10 minutes.",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == sent.returncode, sent.stdout + sent.stderr

    sink_process.wait_for_line(r"^--- \d\d:\d\d:\d\d  message [0-9a-f]+ ")
    expected = [
        "  From:    noreply@example.test",
        "  To:      ada@example.test",
        "  Subject: Reset your password",
        "  Link:    https://app.example.test/reset/tok123",
    ]
    assert expected == [sink_process.wait_for_line(".").string for _ in expected]
    sink_process.wait_for_line(r"^  View:    http://127\.0\.0\.1:\d+/#/messages/")


def test_sigterm_stops_it_cleanly(sink_process: SinkProcess) -> None:
    """SIGTERM ends the sink with status 0 and no traceback."""
    status, stderr = sink_process.stop()

    assert 0 == status
    assert "Traceback" not in stderr
    # The helper's output readers are done before it closes the pipes (a reader left running
    # on a closed pipe raised in a thread and failed whichever test ran next).
    assert not any(pump.is_alive() for pump in sink_process._pumps)
    assert sink_process.process.stdout is not None
    assert sink_process.process.stdout.closed


def test_a_non_loopback_address_needs_the_explicit_flag() -> None:
    """Binding beyond loopback without --allow-remote is refused before anything listens."""
    result = subprocess.run(
        [sys.executable, "-m", "devtools.sink", "--smtp", "0.0.0.0:0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert 2 == result.returncode
    assert "--allow-remote" in result.stderr


def test_a_busy_port_is_a_clear_error() -> None:
    """A port already taken ends the sink with a message that says what to do."""
    first = SinkProcess("--smtp", "127.0.0.1:0", "--no-http")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "devtools.sink", "--smtp", f"127.0.0.1:{first.smtp_port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        first.stop()

    assert 1 == result.returncode
    assert "--smtp HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_fault_flags_reach_the_server() -> None:
    """--tempfail-first and --reject make the sink answer 451 and 550."""
    process = SinkProcess(
        "--smtp", "127.0.0.1:0", "--no-http", "--tempfail-first", "1", "--reject", "*@blocked.test"
    )
    try:
        with smtplib.SMTP("127.0.0.1", process.smtp_port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as tempfail:
                client.send_message(reset_mail())
            with pytest.raises(smtplib.SMTPRecipientsRefused) as rejected:
                client.send_message(reset_mail(to="x@blocked.test"))
            client.send_message(reset_mail(subject="third time"))
        process.wait_for_line(r"^  Subject: third time$")
    finally:
        process.stop()

    assert 451 == tempfail.value.smtp_code
    assert 550 == rejected.value.recipients["x@blocked.test"][0]
