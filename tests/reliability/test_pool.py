"""The pool under a server's limits (fast, aiosmtpd behind loopback proxies that count).

- a connection limit (421 beyond it): the pool shrinks to what the server accepts, loses
  nothing, and grows back once the limit is raised (after ``Retry.maximum``);
- a failure no retry fixes (AUTH refused): one AUTH command, every waiting Future ends with
  the same error, no connection for ``Retry.maximum`` seconds, then one new try.
"""

from __future__ import annotations

import time

import pytest

from mailreset import PermanentFailure, Retry, SMTPSettings, ThreadedMailer
from mailreset.testing import FaultPlan, SMTPSink
from tests.mail_factory import make_message
from tests.reliability.support import CommandCounter, Failures, LimitingProxy

CREDENTIALS = {"app": "s3cret-app-password"}


def test_pool_shrinks_to_the_connection_limit_and_grows_back(smtp_sink: SMTPSink) -> None:
    """Limit 2 with workers=8: all delivered, none failed; limit raised to 6: it grows again."""
    smtp_sink.faults = FaultPlan(delay=0.005)  # each message takes a while: the pool wants to grow
    failures = Failures()
    try:
        with LimitingProxy(smtp_sink.port, limit=2) as proxy:
            settings = SMTPSettings(host="127.0.0.1", port=proxy.port, timeout=5)
            mailer = ThreadedMailer(
                settings, workers=8, retry=Retry(maximum=0.5), on_failure=failures
            )
            first = [mailer.send(make_message(number)) for number in range(100)]
            assert all(future.result(60).accepted for future in first)
            refused_at_two = proxy.refused

            proxy.limit = 6
            time.sleep(0.6)  # Retry.maximum: the pool may try to grow again
            proxy.reset_peak()
            second = [mailer.send(make_message(number)) for number in range(100, 300)]
            assert all(future.result(60).accepted for future in second)
            mailer.close(30)
    finally:
        smtp_sink.faults = FaultPlan()
    print(f"\n421s at limit 2: {refused_at_two}; peak after raising the limit: {proxy.peak}")

    assert [] == failures.calls
    assert refused_at_two >= 1  # the limit was hit...
    assert refused_at_two < 40  # ...and the pool backed off instead of hammering
    assert 3 <= proxy.peak <= 6  # grew back past the old limit, within the new one
    assert 300 == len(smtp_sink.wait_for(300, timeout=30))


# The proxy must read the commands, so the sink takes AUTH in clear (loopback only).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_wrong_password_halts_connecting_for_retry_maximum() -> None:
    """20 queued, wrong password: 1 AUTH, 20 Futures with one error; none more for a while."""
    halt = 3.0
    failures = Failures()
    with SMTPSink(credentials=CREDENTIALS) as sink, CommandCounter(sink.port) as proxy:
        settings = SMTPSettings(
            host="127.0.0.1", port=proxy.port, username="app", password="wrong", timeout=5
        )
        mailer = ThreadedMailer(settings, retry=Retry(maximum=halt), on_failure=failures)
        started = time.monotonic()
        futures = [mailer.send(make_message(number)) for number in range(20)]
        errors = [future.exception(timeout=10) for future in futures]
        during = mailer.send(make_message(20)).exception(timeout=5)
        within_halt = time.monotonic() - started < halt
        auth_during = proxy.counts["AUTH"]
        time.sleep(max(0.0, halt - (time.monotonic() - started)) + 0.3)
        after = mailer.send(make_message(21)).exception(timeout=10)
        mailer.close(10)

        assert [] == sink.messages

    first = errors[0]
    assert isinstance(first, PermanentFailure)
    assert first.every_message
    assert "AUTH" in str(first)
    assert all(error is first for error in errors)
    assert 22 == len(failures.calls)  # the 20, the one sent during the halt, the one after
    if within_halt:  # on a very slow box the halt may have ended already
        assert during is first
        assert 1 == auth_during
    assert isinstance(after, PermanentFailure)
    assert after is not first  # a new try after the halt, with one more AUTH
    assert 2 == proxy.counts["AUTH"]
