"""SMTPTransport under faults no retry fixes, and honest unknown outcomes (fast: aiosmtpd)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailreset import PermanentFailure, SMTPSettings, SMTPTransport, TemporaryFailure
from mailreset.testing import FaultPlan, SMTPSink
from mailreset.testing._smtp import free_port
from tests.reliability.support import CommandCounter, TLSPair, outgoing

TIMEOUT = 1.5
CREDENTIALS = {"app": "s3cret-app-password"}


@pytest.fixture
def tls(tmp_path: Path) -> TLSPair:
    return TLSPair(str(tmp_path))


def _send_one(settings: SMTPSettings) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(PermanentFailure) as caught, SMTPTransport(settings) as transport:
        transport.send(outgoing(1))
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("starttls", [True, False])
def test_plain_or_starttls_against_implicit_tls_is_a_named_mixup(
    starttls: bool, tls: TLSPair
) -> None:
    """starttls (or no TLS) against a 465-style port: PermanentFailure within ~2x timeout."""
    with SMTPSink(ssl_context=tls.server_context) as sink:
        settings = SMTPSettings(
            host="localhost",
            port=sink.port,
            starttls=starttls,
            ca_file=tls.ca_file,
            timeout=TIMEOUT,
        )
        error, elapsed = _send_one(settings)

        assert [] == sink.messages
    assert "TLS mode mix-up" in str(error)
    assert "SMTPSettings.ssl" in str(error)
    assert "SMTPSettings.starttls" in str(error)
    assert error.every_message  # type: ignore[attr-defined]
    assert not error.maybe_delivered  # type: ignore[attr-defined]
    assert elapsed < 2 * TIMEOUT + 1.0  # the documented bound: about twice the timeout


@pytest.mark.parametrize("offers_starttls", [True, False])
def test_implicit_tls_against_a_plain_port_is_a_named_mixup(
    offers_starttls: bool, tls: TLSPair
) -> None:
    """ssl=True against a plain or STARTTLS port: PermanentFailure naming both settings."""
    options = {"starttls_context": tls.server_context} if offers_starttls else {}
    with SMTPSink(**options) as sink:  # type: ignore[arg-type]
        settings = SMTPSettings(
            host="localhost", port=sink.port, ssl=True, ca_file=tls.ca_file, timeout=TIMEOUT
        )
        error, elapsed = _send_one(settings)

    assert "TLS mode mix-up" in str(error)
    assert "SMTPSettings.ssl" in str(error)
    assert "SMTPSettings.starttls" in str(error)
    assert error.every_message  # type: ignore[attr-defined]
    assert elapsed < 2 * TIMEOUT + 1.0


def test_a_silent_server_is_still_a_temporary_timeout() -> None:
    """A port that accepts but never greets (and speaks no TLS) stays a retryable timeout."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = SMTPSettings(host="127.0.0.1", port=port, timeout=0.5)
        with pytest.raises(TemporaryFailure, match="in time") as caught:
            SMTPTransport(settings).send(outgoing(1))

    assert not caught.value.every_message


# The proxy must read the commands, so the sink takes AUTH in clear (loopback only).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("password", ["wrong", CREDENTIALS["app"]])
def test_one_auth_command_per_connection(password: str) -> None:
    """Right or wrong password: exactly one AUTH command on the wire (no mechanism ladder)."""
    with SMTPSink(credentials=CREDENTIALS) as sink, CommandCounter(sink.port) as proxy:
        settings = SMTPSettings(
            host="127.0.0.1", port=proxy.port, username="app", password=password
        )
        transport = SMTPTransport(settings)
        if password == "wrong":
            with pytest.raises(PermanentFailure, match="AUTH") as caught:
                transport.send(outgoing(1))
            assert caught.value.every_message
            assert 535 == caught.value.smtp_code
            assert password not in str(caught.value)
        else:
            transport.send(outgoing(1))
            transport.send(outgoing(2))
            assert 2 == len(sink.wait_for(2))
        transport.close()

    assert 1 == proxy.counts["AUTH"]
    assert 1 == proxy.connections


def test_break_after_the_final_dot_is_maybe_delivered() -> None:
    """The connection drops after DATA's final dot, before the reply: maybe_delivered."""
    with (
        SMTPSink(faults=FaultPlan(drop_after_data=True)) as sink,
        SMTPTransport(sink.settings) as transport,
        pytest.raises(TemporaryFailure) as caught,
    ):
        transport.send(outgoing(1))

    assert caught.value.maybe_delivered
    assert not caught.value.every_message


@pytest.mark.parametrize(
    "plan", [FaultPlan(tempfail_first=1), FaultPlan(reject="user@*")], ids=["451", "550"]
)
def test_a_reply_means_the_outcome_is_known(plan: FaultPlan) -> None:
    """A 4xx or 5xx reply: the server said no, so maybe_delivered is False."""
    with (
        SMTPSink(faults=plan) as sink,
        SMTPTransport(sink.settings) as transport,
        pytest.raises((TemporaryFailure, PermanentFailure)) as caught,
    ):
        transport.send(outgoing(1))

    assert not caught.value.maybe_delivered


def test_refused_connection_was_never_delivered() -> None:
    """Nobody listening: TemporaryFailure, maybe_delivered False, not about every message."""
    settings = SMTPSettings(host="127.0.0.1", port=free_port(), timeout=1)
    with pytest.raises(TemporaryFailure) as caught:
        SMTPTransport(settings).send(outgoing(1))

    assert not caught.value.maybe_delivered
    assert not caught.value.every_message
