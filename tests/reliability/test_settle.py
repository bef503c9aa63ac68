"""Every accepted message ends in exactly one settled Future, whatever goes wrong around it.

Each test makes one kind of fault happen twenty times against a real aiosmtpd (``smtp_sink``),
then proves the mailer is whole: a valid message is still delivered, ``repr`` counts the
workers that really live, ``close()`` works, and the sink holds exactly what was accepted.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import Future
from pathlib import Path

import pytest

from mailreset import (
    Delivery,
    Envelope,
    MailerUnavailable,
    PermanentFailure,
    SMTPTransport,
    Spool,
    ThreadedMailer,
)
from mailreset.testing import SMTPSink
from tests.mail_factory import make_envelope, make_message
from tests.reliability.support import Failures

FAULTS = 20


def _live(mailer: ThreadedMailer) -> int:
    return sum(1 for thread in mailer._pool.threads if thread.is_alive())


def _reported_live(mailer: ThreadedMailer) -> int:
    match = re.search(r"workers=(\d+)/", repr(mailer))
    assert match is not None, repr(mailer)
    return int(match.group(1))


def _still_whole(mailer: ThreadedMailer, sink: SMTPSink, number: int = 999) -> Delivery:
    """A valid message is delivered, repr tells the truth, close() works; the Delivery."""
    delivery = mailer.send(make_message(number)).result(timeout=10)
    assert _live(mailer) == _reported_live(mailer) >= 1
    mailer.close(10)
    assert "closed workers=0/" in repr(mailer)
    assert f"message {number}" in {message.subject for message in sink.messages}
    return delivery


def _settled(futures: list[Future[Delivery]]) -> list[BaseException]:
    errors = [future.exception(timeout=10) for future in futures]
    return [error for error in errors if error is not None]


@pytest.mark.parametrize("value", [None, "To: a@example.com\r\n\r\nhi", b"raw bytes"])
def test_wrong_types_raise_in_the_caller_and_kill_nothing(
    smtp_sink: SMTPSink, value: object
) -> None:
    """send(None/str/bytes) x20 on a running pool: TypeError each time, no worker lost."""
    failures = Failures()
    mailer = ThreadedMailer(smtp_sink.settings, workers=4, on_failure=failures)
    mailer.send(make_message(1)).result(timeout=10)
    live = _live(mailer)

    for _ in range(FAULTS):
        with pytest.raises(TypeError, match="Message"):
            mailer.send(value)  # type: ignore[arg-type]

    assert live == _live(mailer) == _reported_live(mailer)
    _still_whole(mailer, smtp_sink)
    assert [] == failures.calls
    assert {"message 1", "message 999"} == {m.subject for m in smtp_sink.messages}


def test_a_transport_factory_that_raises(smtp_sink: SMTPSink) -> None:
    """A factory raising 20 times: 20 PermanentFailures naming it, then delivery goes on."""
    calls = [0]
    failures = Failures()

    def factory() -> SMTPTransport:
        calls[0] += 1
        if calls[0] <= FAULTS:
            raise RuntimeError(f"no transport today ({calls[0]})")
        return SMTPTransport(smtp_sink.settings)

    mailer = ThreadedMailer(factory, workers=4, on_failure=failures)
    futures = [mailer.send(make_message(number)) for number in range(FAULTS)]
    errors = _settled(futures)

    assert FAULTS == len(errors)
    assert all(isinstance(error, PermanentFailure) for error in errors)
    assert all("transport factory raised RuntimeError" in str(error) for error in errors)
    assert not any(error.maybe_delivered for error in errors)  # type: ignore[attr-defined]
    assert FAULTS == len(failures.calls)
    _still_whole(mailer, smtp_sink)
    assert ["message 999"] == [message.subject for message in smtp_sink.messages]


class _Broken(Exception):
    def __str__(self) -> str:
        raise RuntimeError("even str() of this error fails")


class Exploding:
    """A transport over the sink whose sends raise what ``errors`` hold, one each, first."""

    def __init__(self, settings: object, errors: list[BaseException]) -> None:
        self.inner = SMTPTransport(settings)  # type: ignore[arg-type]
        self.errors = errors

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, envelope: Envelope) -> Delivery:
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.send(envelope)


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug in a plug-in"), SystemExit(3), _Broken(), KeyError("x")],
    ids=["ValueError", "SystemExit", "str-raises", "KeyError"],
)
def test_a_transport_whose_send_raises_something_unexpected(
    smtp_sink: SMTPSink, error: BaseException
) -> None:
    """20 unexpected exceptions out of send(): 20 PermanentFailures, maybe_delivered (unknown)."""
    errors: list[BaseException] = [error] * FAULTS
    failures = Failures()
    mailer = ThreadedMailer(
        lambda: Exploding(smtp_sink.settings, errors), workers=4, on_failure=failures
    )
    futures = [mailer.send(make_message(number)) for number in range(FAULTS)]
    outcomes = _settled(futures)

    assert FAULTS == len(outcomes) == len(failures.calls)
    assert all(isinstance(outcome, PermanentFailure) for outcome in outcomes)
    assert all(f"unexpected {type(error).__name__}" in str(o) for o in outcomes)
    # The transport broke inside send(): nobody can say the server did not take it.
    assert all(outcome.maybe_delivered for outcome in outcomes)  # type: ignore[attr-defined]
    assert all(outcome.__cause__ is None for outcome in outcomes)
    assert all(outcome.original_error is error for outcome in outcomes)  # type: ignore[attr-defined]
    _still_whole(mailer, smtp_sink)
    assert ["message 999"] == [message.subject for message in smtp_sink.messages]


@pytest.mark.parametrize(
    "raising", [RuntimeError("callback bug"), SystemExit(1)], ids=["RuntimeError", "SystemExit"]
)
def test_on_failure_that_raises(smtp_sink: SMTPSink, raising: BaseException) -> None:
    """A callback raising on each of 20 failures: every Future still ends, workers live."""
    failures = Failures(raising=raising)
    errors: list[BaseException] = [ValueError("boom")] * (FAULTS // 2)
    mailer = ThreadedMailer(
        lambda: Exploding(smtp_sink.settings, errors), workers=4, on_failure=failures
    )
    with smtp_sink.faulty(reject="bad*"):
        # The first half break in the transport, the rest the server refuses (550);
        # Messages and Envelopes both (an Envelope is made a message again for on_failure).
        futures = [
            mailer.send(
                make_envelope(n, to="bad@example.com")
                if n % 2
                else make_message(n, to="bad@example.com")
            )
            for n in range(FAULTS)
        ]
        outcomes = _settled(futures)

    assert FAULTS == len(outcomes) == len(failures.calls)
    assert all(isinstance(outcome, PermanentFailure) for outcome in outcomes)
    _still_whole(mailer, smtp_sink)
    # Exploding raised before sending, and the server refused the others: only 999 arrived.
    assert ["message 999"] == [message.subject for message in smtp_sink.messages]


def test_a_spool_that_cannot_be_written(smtp_sink: SMTPSink, tmp_path: Path) -> None:
    """The spool folder vanishes: send raises MailerUnavailable 20 times, nothing is queued."""
    folder = tmp_path / "spool"
    mailer = ThreadedMailer(smtp_sink.settings, workers=4, spool=folder)
    mailer.send(make_message(1)).result(timeout=10)
    shutil.rmtree(folder)  # a real fault: the disk behind the spool is gone

    for number in range(FAULTS):
        with pytest.raises(MailerUnavailable, match="could not store the message"):
            mailer.send(make_message(100 + number))
    mailer.flush(10)

    folder.mkdir(mode=0o700)  # the disk is back
    _still_whole(mailer, smtp_sink)
    assert {"message 1", "message 999"} == {m.subject for m in smtp_sink.messages}
    assert [] == list(folder.glob("*.msg"))


class FailingSpool(Spool):
    """A spool whose disk fails after the write: removing or setting files aside raises."""

    def remove(self, path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    def set_aside(self, path: Path, folder: str = "failed") -> Path | None:
        raise OSError(5, "Input/output error", str(path))


def test_spool_errors_after_sending_never_leave_a_future_pending(
    smtp_sink: SMTPSink, tmp_path: Path
) -> None:
    """remove()/set_aside() failing: 20 delivered and 20 refused Futures all settle."""
    spool = FailingSpool(tmp_path / "spool")
    failures = Failures()
    mailer = ThreadedMailer(smtp_sink.settings, workers=4, spool=spool, on_failure=failures)
    with smtp_sink.faulty(reject="bad*"):
        good = [mailer.send(make_message(n)) for n in range(FAULTS)]
        bad = [mailer.send(make_message(n, to="bad@example.com")) for n in range(50, 50 + FAULTS)]
        delivered = [future.result(timeout=10) for future in good]
        refused = _settled(bad)

    assert FAULTS == len(delivered) == len(refused) == len(failures.calls)
    _still_whole(mailer, smtp_sink)
    assert FAULTS + 1 == len(smtp_sink.messages)
