"""The fault campaign against a real Postfix (STARTTLS + AUTH on loopback): counted at its Maildir.

Each test makes a real fault happen (Postfix stopped mid-burst, anvil's connection and message
rate limits, a wrong password, a TLS mode mix-up) with ThreadedMailer's defaults, and counts
by Message-ID what Postfix delivered: sent, delivered, duplicates the client handed over (and
whether each was flagged ``maybe_duplicated``), failures reported, and failures that were in
fact delivered. A copy's Postfix queue id tells a second handover by the client from Postfix
delivering one accepted message twice after its own stop (counted apart, not our doing).
Run them with ``pytest -m postfix tests/reliability -s`` to see each campaign's counts.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import attrs
import pytest

from mailreset import (
    Delivery,
    DeliveryError,
    PermanentFailure,
    Retry,
    ThreadedMailer,
)
from tests.mail_factory import make_message
from tests.postfix_support import DOMAIN, Postfix
from tests.rq_support import wait_until

pytestmark = pytest.mark.postfix

TO = f"user@{DOMAIN}"


@attrs.frozen
class Counts:
    """What a campaign sent and what Postfix's Maildir holds."""

    sent: int
    delivered: int  # distinct Message-IDs in the Maildir
    duplicates: int  # extra copies the client handed over (each with its own queue id)
    unflagged_duplicates: int  # of which the Delivery did not say maybe_duplicated
    failed: int  # Futures that ended in an error
    false_failures: int  # of which the message is in the Maildir, without maybe_delivered
    # Extra copies of one queue id: Postfix's own at-least-once local delivery (its delivery
    # agent stopped after writing the file, before reporting it done), not the client's doing.
    redelivered_by_postfix: int


def _outcomes(futures: dict[str, Future[Delivery]]) -> dict[str, Delivery | BaseException]:
    return {
        message_id: future.exception(timeout=0) or future.result(timeout=0)
        for message_id, future in futures.items()
    }


def _count(
    futures: dict[str, Future[Delivery]], copies: dict[str, list[str]], what: str
) -> tuple[Counts, dict[str, Delivery | BaseException]]:
    outcomes = _outcomes(futures)
    flagged = {
        message_id
        for message_id, outcome in outcomes.items()
        if isinstance(outcome, Delivery) and outcome.maybe_duplicated
    }
    failures = {
        message_id: outcome
        for message_id, outcome in outcomes.items()
        if isinstance(outcome, BaseException)
    }
    handed_over = {message_id: len(set(copies.get(message_id, []))) for message_id in futures}
    counts = Counts(
        sent=len(futures),
        delivered=sum(1 for count in handed_over.values() if count),
        duplicates=sum(max(0, count - 1) for count in handed_over.values()),
        unflagged_duplicates=sum(
            count - 1
            for message_id, count in handed_over.items()
            if count > 1 and message_id not in flagged
        ),
        failed=len(failures),
        false_failures=sum(
            1
            for message_id, error in failures.items()
            if handed_over[message_id] and not getattr(error, "maybe_delivered", False)
        ),
        redelivered_by_postfix=sum(
            len(copies.get(message_id, [])) - count for message_id, count in handed_over.items()
        ),
    )
    print(f"\ncampaign {what}: {counts}")
    return counts, outcomes


def _wait_copies(postfix: Postfix, count: int) -> dict[str, list[str]]:
    postfix.wait_delivered(count, 120)
    return postfix.copies()


def _burst(mailer: ThreadedMailer, numbers: range) -> dict[str, Future[Delivery]]:
    return {f"<{n}.test@example.com>": mailer.send(make_message(n, to=TO)) for n in numbers}


def _after(futures: dict[str, Future[Delivery]], count: int) -> threading.Event:
    """An event set once ``count`` of ``futures`` are done."""
    done = threading.Event()
    finished = [0]
    lock = threading.Lock()

    def one_more(_: object) -> None:
        with lock:
            finished[0] += 1
            if finished[0] >= count:
                done.set()

    for future in futures.values():
        future.add_done_callback(one_more)
    return done


def _wait_logged(postfix: Postfix, text: str) -> None:
    """Wait until Postfix's log holds ``text`` (postlogd writes it a moment later)."""
    try:
        wait_until(lambda: text in postfix.log(), 10.0, f"{text!r} in Postfix's log")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; {postfix.state()}") from None


def _clean(counts: Counts, sent: int) -> None:
    assert sent == counts.sent == counts.delivered, counts
    assert 0 == counts.failed == counts.false_failures, counts
    assert 0 == counts.unflagged_duplicates, counts


@pytest.mark.slow
@pytest.mark.parametrize("down", [5.0, 60.0], ids=["5s", "60s"])
def test_burst_with_postfix_stopped(postfix: Postfix, down: float) -> None:
    """300 sent, Postfix down 5 s (or 60 s) mid-burst, default Retry(): 300 delivered, none
    failed, every duplicate flagged ``maybe_duplicated``."""
    mailer = ThreadedMailer(postfix.settings())  # every default: workers=16, Retry()
    futures = _burst(mailer, range(300))
    pending_while_down: list[int] = []

    def outage() -> None:
        _after(futures, 20).wait(60)
        postfix.stop()
        pending_while_down.append(sum(not future.done() for future in futures.values()))
        time.sleep(down)
        postfix.start()

    stopper = threading.Thread(target=outage, daemon=True)
    stopper.start()
    stopper.join(down + 120)
    assert not stopper.is_alive()
    mailer.close(300)

    counts, outcomes = _count(futures, _wait_copies(postfix, 300), f"stopped {down:.0f} s")
    _clean(counts, 300)
    # The outage hit mid-burst: messages were waiting while Postfix was down, and retried.
    print(f"pending while Postfix was down: {pending_while_down}")
    assert pending_while_down[0] > 0
    assert any(o.attempts > 1 for o in outcomes.values() if isinstance(o, Delivery))


def test_connection_limit_of_one(make_postfix: Callable[..., Postfix]) -> None:
    """anvil allows 1 connection (421 beyond it), workers=16: 200 of 200, none failed."""
    postfix = make_postfix(connection_limit=1)
    mailer = ThreadedMailer(postfix.settings())
    futures = _burst(mailer, range(200))
    mailer.close(240)

    counts, _ = _count(futures, _wait_copies(postfix, 200), "connection limit 1")
    _clean(counts, 200)
    # The limit was hit (Postfix answered 421), and ridden out.
    _wait_logged(postfix, "Connection concurrency limit exceeded")


@pytest.mark.slow
def test_message_rate_limit(make_postfix: Callable[..., Postfix]) -> None:
    """anvil allows 50 messages per 20 s (450 beyond): 120 of 120 within the deadline."""
    postfix = make_postfix(message_rate=(50, 20))
    mailer = ThreadedMailer(postfix.settings())
    started = time.monotonic()
    futures = _burst(mailer, range(120))
    mailer.close(Retry().deadline)
    elapsed = time.monotonic() - started

    counts, _ = _count(futures, _wait_copies(postfix, 120), "rate 50/20 s")
    _clean(counts, 120)
    _wait_logged(postfix, "Message delivery request rate limit exceeded")
    print(f"rate-limited burst took {elapsed:.0f} s")


_AUTH_FAILED = re.compile(r"SASL \w+ authentication failed")


def test_wrong_password_costs_one_auth_and_keeps_the_spool(
    postfix: Postfix, tmp_path: Path
) -> None:
    """20 queued with a wrong password: one AUTH, 20 Futures with the same PermanentFailure,
    20 files left on the spool; a new mailer with the right password delivers all 20."""
    folder = tmp_path / "spool"
    wrong = ThreadedMailer(postfix.settings(password="wrong"), spool=folder)
    futures = _burst(wrong, range(20))
    errors = {id(future.exception(timeout=30)) for future in futures.values()}
    error = next(iter(futures.values())).exception(0)
    wrong.close(30)
    _wait_logged(postfix, "authentication failed")
    time.sleep(1.0)  # any second AUTH would be logged by now

    assert 1 == len(errors)  # the same error object for every message
    assert isinstance(error, PermanentFailure)
    assert "AUTH" in str(error)
    assert "wrong" not in str(error)
    assert not error.maybe_delivered
    assert 1 == len(_AUTH_FAILED.findall(postfix.log())), postfix.log()[-2000:]
    assert 20 == len(list(folder.glob("*.msg")))
    assert 0 == sum(postfix.delivered().values())

    right = ThreadedMailer(postfix.settings(), spool=folder)
    right.flush(60)
    right.close(60)
    delivered = postfix.wait_delivered(20, 60)
    print(f"\ncampaign wrong password: 1 AUTH, 20 failed alike, then {len(delivered)} delivered")

    assert set(futures) == set(delivered)
    assert all(1 == count for count in delivered.values())
    assert [] == list(folder.glob("*.msg"))
    assert 1 == len(_AUTH_FAILED.findall(postfix.log()))


@pytest.mark.parametrize("mode", ["starttls-on-implicit", "ssl-on-starttls"])
def test_tls_mode_mixup_is_a_fast_named_failure(postfix: Postfix, mode: str) -> None:
    """starttls against the implicit-TLS port (or ssl against STARTTLS): one PermanentFailure
    naming the mix-up for every queued message, within about twice the timeout."""
    timeout = 2.0
    if mode == "starttls-on-implicit":
        settings = postfix.settings(port=postfix.tls_port, timeout=timeout)
    else:
        settings = postfix.settings(starttls=False, ssl=True, timeout=timeout)
    mailer = ThreadedMailer(settings)
    started = time.monotonic()
    futures = _burst(mailer, range(10))
    errors = [future.exception(timeout=30) for future in futures.values()]
    elapsed = time.monotonic() - started
    mailer.close(10)

    assert all(isinstance(error, PermanentFailure) for error in errors)
    assert 1 == len({id(error) for error in errors})
    error = errors[0]
    assert isinstance(error, DeliveryError)
    assert "TLS mode mix-up" in str(error)
    assert "SMTPSettings.ssl" in str(error)
    assert "SMTPSettings.starttls" in str(error)
    assert elapsed < 2 * timeout + 2.0, elapsed  # the documented bound, plus a loaded box
    assert 0 == sum(postfix.delivered().values())


def test_wrong_ca_is_one_fast_named_failure(postfix: Postfix, tmp_path: Path) -> None:
    """A CA that did not sign the server's certificate: one PermanentFailure for every queued
    message, naming the certificate and MAIL_CA_FILE; no AUTH goes out."""
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    mailer = ThreadedMailer(postfix.settings(ca_file=str(other_ca)))
    started = time.monotonic()
    futures = _burst(mailer, range(10))
    errors = [future.exception(timeout=30) for future in futures.values()]
    elapsed = time.monotonic() - started
    mailer.close(10)
    time.sleep(1.0)  # postlogd writes asynchronously

    first = errors[0]
    assert isinstance(first, PermanentFailure)
    assert all(error is first for error in errors)
    assert "certificate" in str(first)
    assert "ca_file" in str(first)
    assert elapsed < 10.0, elapsed
    assert "auth=" not in postfix.log()  # no AUTH command: the password never went out
    assert 0 == sum(postfix.delivered().values())
