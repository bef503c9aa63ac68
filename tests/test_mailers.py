"""Mailers: the shared contract, ThreadedMailer's lifecycle, retries and the SMTP fault matrix."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.message import Message

import pytest

from mailreset import (
    ConfigurationError,
    Delivery,
    Envelope,
    InvalidMessage,
    MailerClosed,
    MemoryTransport,
    PermanentFailure,
    QueueFull,
    Retry,
    SMTPSettings,
    SyncMailer,
    TemporaryFailure,
    ThreadedMailer,
)
from mailreset.mailers import Mailer
from mailreset.testing import CapturedMessage, FaultPlan, SMTPSink
from mailreset.testing._smtp import free_port
from tests.mail_factory import make_envelope, make_message
from tests.process_support import run_in_fork

FAST = Retry(attempts=5, initial=0.001, maximum=0.01, deadline=30)


class Failures:
    """A thread-safe on_failure recorder."""

    def __init__(self) -> None:
        self.calls: list[tuple[Message, BaseException]] = []
        self._lock = threading.Lock()

    def __call__(self, message: Message, error: BaseException) -> None:
        with self._lock:
            self.calls.append((message, error))


class Gate:
    """A Transport whose sends wait until the gate opens; counts sends waiting at once."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.waiting = 0
        self.changed = threading.Condition()
        self.memory = MemoryTransport()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, envelope: Envelope) -> Delivery:
        with self.changed:
            self.waiting += 1
            self.changed.notify_all()
        self.opened.wait(10)
        with self.changed:
            self.waiting -= 1
        return self.memory.send(envelope)

    def wait_until_waiting(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.waiting >= count, 5)


# -- the contract, for every mailer -------------------------------------------------------------

MailerFactory = Callable[..., Mailer]


class MailerContract:
    """What every mailer does; subclasses provide ``make`` and ``arrived``."""

    def test_send_returns_a_future_of_the_delivery(
        self, make: MailerFactory, arrived: Callable[[int], list[CapturedMessage]]
    ) -> None:
        """send() returns a Future that ends in the Delivery; the message arrives."""
        mailer = make()
        future = mailer.send(make_message(1))
        delivery = future.result(timeout=5)
        mailer.close()

        assert "<1.test@example.com>" == delivery.message_id
        assert 1 == delivery.attempts
        assert ["message 1"] == [message.subject for message in arrived(1)]

    def test_send_takes_an_envelope_too(
        self, make: MailerFactory, arrived: Callable[[int], list[CapturedMessage]]
    ) -> None:
        """An Envelope is sent as it is: same bytes and recipients, Bcc included."""
        envelope = make_envelope(2, bcc="hidden@example.com")
        mailer = make()
        delivery = mailer.send(envelope).result(timeout=5)
        mailer.close()
        [received] = arrived(1)

        assert ("user@example.com", "hidden@example.com") == delivery.accepted
        assert envelope.data == received.raw
        assert envelope.recipients == received.envelope_to

    @pytest.mark.parametrize("value", [None, "To: a@example.com\r\n\r\nhi", b"raw", 42])
    def test_anything_else_is_a_type_error_in_the_caller(
        self, make: MailerFactory, value: object
    ) -> None:
        """send() of something neither a Message nor an Envelope raises TypeError at once."""
        failures = Failures()
        mailer = make(on_failure=failures)
        with pytest.raises(TypeError, match="Message"):
            mailer.send(value)  # type: ignore[arg-type]
        mailer.close()

        assert [] == failures.calls

    def test_invalid_message_is_refused_in_the_caller(self, make: MailerFactory) -> None:
        """A message with no recipient raises InvalidMessage from send() itself."""
        message = make_message(3)
        del message["To"]
        mailer = make()
        with pytest.raises(InvalidMessage, match="no recipient"):
            mailer.send(message)
        mailer.close()

    def test_send_after_close_raises(self, make: MailerFactory) -> None:
        """A closed mailer refuses new messages with MailerClosed."""
        mailer = make()
        mailer.close()

        with pytest.raises(MailerClosed):
            mailer.send(make_message(1))

    def test_permanent_failure_reaches_future_and_on_failure(
        self, make: MailerFactory, reject_all: Callable[[], object]
    ) -> None:
        """Every recipient refused: the Future and on_failure get the PermanentFailure."""
        failures = Failures()
        mailer = make(on_failure=failures)
        with reject_all():  # type: ignore[attr-defined]
            future = mailer.send(make_message(1))
            error = future.exception(timeout=5)
            mailer.close()

        assert isinstance(error, PermanentFailure)
        assert [("message 1", error)] == [(m["Subject"], e) for m, e in failures.calls]


class MemoryMailerContract(MailerContract):
    @pytest.fixture
    def memory(self) -> MemoryTransport:
        return MemoryTransport()

    @pytest.fixture
    def arrived(self, memory: MemoryTransport) -> Callable[[int], list[CapturedMessage]]:
        return lambda count: [CapturedMessage.from_envelope(sent) for sent in memory.envelopes]

    @pytest.fixture
    def reject_all(self, memory: MemoryTransport) -> Callable[[], object]:
        class _Reject:
            def __enter__(self) -> None:
                memory.fail_next(PermanentFailure("550 no such user", smtp_code=550))

            def __exit__(self, *exc_info: object) -> None:
                pass

        return _Reject


class SinkMailerContract(MailerContract):
    @pytest.fixture
    def arrived(self, smtp_sink: SMTPSink) -> Callable[[int], list[CapturedMessage]]:
        return smtp_sink.wait_for

    @pytest.fixture
    def reject_all(self, smtp_sink: SMTPSink) -> Callable[[], object]:
        return lambda: smtp_sink.faulty(reject="*")


class TestSyncMailerMemory(MemoryMailerContract):
    @pytest.fixture
    def make(self, memory: MemoryTransport) -> MailerFactory:
        return lambda **options: SyncMailer(memory, **options)


class TestSyncMailerSMTP(SinkMailerContract):
    @pytest.fixture
    def make(self, smtp_sink: SMTPSink) -> MailerFactory:
        return lambda **options: SyncMailer(smtp_sink.settings, **options)


class TestThreadedMailerMemory(MemoryMailerContract):
    @pytest.fixture
    def make(self, memory: MemoryTransport) -> MailerFactory:
        return lambda **options: ThreadedMailer(memory, retry=FAST, **options)


class TestThreadedMailerSMTP(SinkMailerContract):
    @pytest.fixture
    def make(self, smtp_sink: SMTPSink) -> MailerFactory:
        return lambda **options: ThreadedMailer(smtp_sink.settings, retry=FAST, **options)


# -- ThreadedMailer: settings and lifecycle -----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": 0}, "workers"),
        ({"max_queue": 0}, "max_queue"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"workers": 2.5}, "workers"),
        ({"on_failure": "log"}, "on_failure"),
        ({"retry": 3}, "retry"),
    ],
)
def test_bad_settings_fail_at_construction(options: dict[str, object], named: str) -> None:
    """Each bad setting raises ConfigurationError naming it, when the mailer is made."""
    with pytest.raises(ConfigurationError, match=named):
        ThreadedMailer(MemoryTransport(), **options)  # type: ignore[arg-type]


def test_bad_transport_fails_at_construction() -> None:
    """A transport that is none of the three accepted kinds is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="SMTPSettings, a Transport"):
        ThreadedMailer(42)  # type: ignore[arg-type]


def test_workers_start_lazily() -> None:
    """No thread runs before the first send; one does after it."""
    before = threading.active_count()
    mailer = ThreadedMailer(MemoryTransport())
    made = threading.active_count()
    mailer.send(make_message(1)).result(5)
    mailer.close()

    assert before == made
    assert 1 == len(mailer._pool.threads)


def test_more_connections_only_while_messages_wait() -> None:
    """With every worker busy and messages waiting, it grows up to ``workers``, no further.

    It grows only once a connection has delivered (see test_no_growth_before_a_delivery).
    """
    gates: list[Gate] = []
    made = threading.Condition()
    opened = threading.Event()
    opened.set()

    def factory() -> Gate:
        gate = Gate()
        gate.opened = opened
        with made:
            gates.append(gate)
            made.notify_all()
        return gate

    mailer = ThreadedMailer(factory, workers=3)
    mailer.send(make_message(100)).result(5)
    opened.clear()
    futures = [mailer.send(make_message(number)) for number in range(10)]
    with made:
        assert made.wait_for(lambda: len(gates) >= 3, 5)
    for gate in gates:
        gate.wait_until_waiting(1)
    opened.set()
    mailer.close(5)

    assert 3 == len(gates)
    assert 11 == sum(len(gate.memory) for gate in gates)
    assert all(future.done() for future in futures)


def test_no_growth_before_a_delivery() -> None:
    """Until a connection has delivered, one worker: bad settings cost one try, not workers."""
    gates: list[Gate] = []
    opened = threading.Event()

    def factory() -> Gate:
        gates.append(Gate())
        gates[-1].opened = opened  # the pool may grow once the first delivered
        return gates[-1]

    mailer = ThreadedMailer(factory, workers=4)
    futures = [mailer.send(make_message(number)) for number in range(10)]
    for _ in range(500):  # bounded: 5 s
        if gates:
            break
        time.sleep(0.01)
    gates[0].wait_until_waiting(1)
    time.sleep(0.5)  # time in which a growing pool would have made a second transport
    assert 1 == len(gates)
    opened.set()
    mailer.close(10)

    assert all(future.result(0) for future in futures)


def test_close_drains_with_a_growing_pool() -> None:
    """close() right after a burst still opens more connections to drain it (up to workers)."""
    opened: list[MemoryTransport] = []

    class Slow(MemoryTransport):
        def send(self, envelope: Envelope) -> Delivery:
            time.sleep(0.05)  # a server a few round trips away
            return super().send(envelope)

    def factory() -> Slow:
        opened.append(Slow())
        return opened[-1]

    mailer = ThreadedMailer(factory, workers=3)
    futures = [mailer.send(make_message(number)) for number in range(10)]
    mailer.close(10)  # before the first delivery (50 ms) proved the settings

    assert all(future.result(0) for future in futures)
    assert 2 <= len(opened) <= 3
    assert 10 == sum(len(transport.envelopes) for transport in opened)


def test_single_transport_means_one_worker() -> None:
    """Given one Transport instance, the mailer uses one worker and one connection."""
    mailer = ThreadedMailer(MemoryTransport(), workers=8)

    assert 1 == mailer.workers


def test_queue_full_at_once_or_after_timeout() -> None:
    """A full queue raises QueueFull at once, or after ``timeout`` seconds."""
    gate = Gate()
    mailer = ThreadedMailer(gate, max_queue=2)
    mailer.send(make_message(0))
    gate.wait_until_waiting(1)  # the worker holds message 0; the queue is empty
    mailer.send(make_message(1))
    mailer.send(make_message(2))

    with pytest.raises(QueueFull, match="max_queue"):
        mailer.send(make_message(3))
    with pytest.raises(QueueFull):
        mailer.send(make_message(4), timeout=0.01)
    gate.opened.set()
    mailer.close(5)

    assert ["message 0", "message 1", "message 2"] == [m["Subject"] for m in gate.memory.messages]


def test_idle_connection_is_closed_and_reopened() -> None:
    """A worker idle for idle_timeout closes its connection and ends; the next send restarts."""
    memory = MemoryTransport()
    mailer = ThreadedMailer(memory, idle_timeout=0.05)
    mailer.send(make_message(1)).result(5)
    first = mailer._pool.threads[0]
    first.join(5)
    closed_while_idle = not memory.is_open
    mailer.send(make_message(2)).result(5)
    mailer.close()

    assert closed_while_idle
    assert not first.is_alive()
    assert 2 == memory.opened


def test_close_timeout_reports_what_was_not_sent() -> None:
    """close(timeout) that runs out fails the queued messages' Futures and tells on_failure."""
    gate = Gate()
    failures = Failures()
    mailer = ThreadedMailer(gate, on_failure=failures)
    held = mailer.send(make_message(0))
    gate.wait_until_waiting(1)
    queued = mailer.send(make_message(1))

    with pytest.raises(TimeoutError, match="close"):
        mailer.close(timeout=0.05)
    gate.opened.set()

    assert isinstance(queued.exception(5), TemporaryFailure)
    assert ["message 1"] == [message["Subject"] for message, _ in failures.calls]
    assert "<0.test@example.com>" == held.result(5).message_id


def test_cancelled_future_is_not_sent() -> None:
    """Cancelling a Future before its message went out keeps it from being sent."""
    gate = Gate()
    mailer = ThreadedMailer(gate)
    mailer.send(make_message(0))
    gate.wait_until_waiting(1)
    cancelled = mailer.send(make_message(1))

    assert cancelled.cancel()
    gate.opened.set()
    mailer.close(5)
    assert ["message 0"] == [message["Subject"] for message in gate.memory.messages]


def test_forked_child_sends_with_its_own_workers(smtp_sink: SMTPSink) -> None:
    """A mailer used before a fork works in the child, with fresh workers and connections."""
    mailer = ThreadedMailer(smtp_sink.settings)
    mailer.send(make_message(1)).result(5)

    def in_child() -> None:
        mailer.send(make_message(2)).result(5)
        mailer.close(5)

    code = run_in_fork(in_child)
    mailer.close()

    assert 0 == code
    assert ["message 1", "message 2"] == sorted(m.subject for m in smtp_sink.wait_for(2))


def test_drain_at_exit_delivers_queued_mail(smtp_sink: SMTPSink, tmp_path: object) -> None:
    """drain_at_exit=True delivers what is queued when the interpreter exits."""
    import subprocess
    import sys

    script = (
        "from mailreset import SMTPSettings, ThreadedMailer\n"
        "from tests.mail_factory import make_envelope, make_message\n"
        f"m = ThreadedMailer(SMTPSettings(host='127.0.0.1', port={smtp_sink.port}),"
        " drain_at_exit=True)\n"
        "for i in range(50): m.send(make_message(i))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30, cwd=_ROOT)

    assert 50 == len(smtp_sink.wait_for(50))


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- retries -----------------------------------------------------------------------------------


class SteppingClock:
    """A clock that only moves when sleep is called: backoff tests take no real time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_temporary_failures_are_retried_with_capped_jittered_backoff() -> None:
    """Two 4xx then success: three attempts, each wait within its exponential ceiling."""
    memory = MemoryTransport()
    memory.fail_next(TemporaryFailure("451 busy"), TemporaryFailure("451 busy"))
    clock = SteppingClock()
    retry = Retry(attempts=5, initial=1.0, maximum=1.5, deadline=60)
    mailer = ThreadedMailer(memory, retry=retry, clock=clock, sleep=clock.sleep)

    delivery = mailer.send(make_message(1)).result(5)
    mailer.close()

    assert 3 == delivery.attempts
    assert 2 == len(clock.sleeps)
    assert all(
        0 <= wait <= ceiling for wait, ceiling in zip(clock.sleeps, [1.0, 1.5], strict=True)
    )
    assert sum(clock.sleeps) == pytest.approx(delivery.elapsed, abs=1e-5)


def test_retries_stop_at_attempts_then_report() -> None:
    """A message that keeps failing temporarily is reported after ``attempts`` tries."""
    memory = MemoryTransport()
    memory.fail_next(*[TemporaryFailure("451 busy") for _ in range(3)])
    clock = SteppingClock()
    failures = Failures()
    mailer = ThreadedMailer(
        memory, retry=Retry(attempts=3), clock=clock, sleep=clock.sleep, on_failure=failures
    )

    error = mailer.send(make_message(1)).exception(5)
    mailer.close()

    assert isinstance(error, TemporaryFailure)
    assert 2 == len(clock.sleeps)
    assert [error] == [failure for _, failure in failures.calls]
    assert [] == memory.messages


def test_retries_stop_at_the_deadline() -> None:
    """No retry starts after ``deadline`` seconds, whatever ``attempts`` allows."""
    memory = MemoryTransport()
    memory.fail_next(*[TemporaryFailure("451 busy") for _ in range(50)])
    clock = SteppingClock()
    retry = Retry(attempts=50, initial=10, maximum=10, deadline=25)
    mailer = ThreadedMailer(memory, retry=retry, clock=clock, sleep=clock.sleep)

    error = mailer.send(make_message(1)).exception(5)
    mailer.close()

    assert isinstance(error, TemporaryFailure)
    assert sum(clock.sleeps) <= 25


def test_permanent_failures_are_not_retried() -> None:
    """A 5xx ends the message at once: no backoff, one report."""
    memory = MemoryTransport()
    memory.fail_next(PermanentFailure("550 no", smtp_code=550))
    clock = SteppingClock()
    failures = Failures()
    mailer = ThreadedMailer(memory, clock=clock, sleep=clock.sleep, on_failure=failures)

    error = mailer.send(make_message(1)).exception(5)
    mailer.close()

    assert isinstance(error, PermanentFailure)
    assert [] == clock.sleeps
    assert 1 == len(failures.calls)


def test_invalid_message_raises_in_the_caller() -> None:
    """A message with no recipient raises InvalidMessage from send(); nothing is queued."""
    failures = Failures()
    memory = MemoryTransport()
    mailer = ThreadedMailer(memory, on_failure=failures)
    message = make_message(1)
    del message["To"]

    with pytest.raises(InvalidMessage, match="no recipient"):
        mailer.send(message)
    mailer.close()

    assert [] == failures.calls
    assert [] == memory.envelopes


def test_logs_redact_links_and_never_show_passwords(
    caplog: pytest.LogCaptureFixture, smtp_sink: SMTPSink
) -> None:
    """Failure logs name the message but never a reset link or the SMTP password."""
    memory = MemoryTransport()
    memory.fail_next(TemporaryFailure("451 see https://app.example.com/reset/eyJa.eyJb.sig"))
    settings = SMTPSettings(
        host="127.0.0.1", port=free_port(), username="u", password="hunter2-secret", timeout=1
    )
    with caplog.at_level(logging.INFO, logger="mailreset"):
        first = ThreadedMailer(memory, retry=Retry(attempts=1))
        first.send(make_message(1)).exception(5)
        first.close()
        second = ThreadedMailer(settings, retry=Retry(attempts=1))
        second.send(make_message(2)).exception(5)
        second.close()

    assert "<1.test@example.com>" in caplog.text
    assert "eyJa" not in caplog.text
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(settings)


# -- the fault matrix, counted at a real aiosmtpd ------------------------------------------------


def _subjects(messages: list[CapturedMessage]) -> set[str]:
    return {message.subject for message in messages}


def _run_burst(
    mailer: ThreadedMailer, count: int
) -> tuple[list[Delivery | BaseException], set[str]]:
    futures = [mailer.send(make_message(number)) for number in range(count)]
    mailer.close(30)
    outcomes = [future.exception() or future.result() for future in futures]
    return outcomes, {f"message {number}" for number in range(count)}  # type: ignore[misc]


def test_server_down_at_start_then_up() -> None:
    """Nothing listening at first; the server comes up during the backoff: all delivered."""
    port = free_port()
    sink = SMTPSink(port=port)
    failures = Failures()
    starting = threading.Lock()

    def sleep(seconds: float) -> None:
        with starting:  # two workers may back off at once
            sink.start()

    settings = SMTPSettings(host="127.0.0.1", port=port, timeout=2)
    mailer = ThreadedMailer(settings, workers=2, sleep=sleep, on_failure=failures)
    try:
        _, expected = _run_burst(mailer, 20)
        assert expected == _subjects(sink.wait_for(20))
    finally:
        sink.stop()
    assert [] == failures.calls


@pytest.mark.parametrize(
    "plan",
    [
        FaultPlan(tempfail_first=5),
        FaultPlan(drop_after_data=True),
        FaultPlan(fail_rate=0.3, seed=7),
    ],
    ids=["451-first-5", "drop-after-data", "451-30-percent"],
)
def test_temporary_faults_lose_nothing(smtp_sink: SMTPSink, plan: FaultPlan) -> None:
    """Under 4xx replies and dropped connections, every message arrives, none is reported."""
    failures = Failures()
    lifted = threading.Event()

    def sleep(seconds: float) -> None:
        if plan.drop_after_data and not lifted.is_set():
            lifted.set()
            smtp_sink.faults = FaultPlan()

    smtp_sink.faults = plan
    mailer = ThreadedMailer(
        smtp_sink.settings, workers=3, retry=Retry(attempts=20), sleep=sleep, on_failure=failures
    )
    outcomes, expected = _run_burst(mailer, 40)

    assert [] == failures.calls
    assert all(isinstance(outcome, Delivery) for outcome in outcomes)
    assert expected == _subjects(smtp_sink.wait_for(40))


def test_slow_server_past_the_timeout(smtp_sink: SMTPSink) -> None:
    """Replies slower than the timeout are retried; every message arrives at least once."""
    failures = Failures()

    def sleep(seconds: float) -> None:
        smtp_sink.faults = FaultPlan()

    smtp_sink.faults = FaultPlan(delay=0.5)
    settings = SMTPSettings(host=smtp_sink.host, port=smtp_sink.port, timeout=0.2)
    mailer = ThreadedMailer(settings, workers=2, sleep=sleep, on_failure=failures)
    outcomes, expected = _run_burst(mailer, 6)

    assert [] == failures.calls
    assert expected <= _subjects(smtp_sink.wait_for(6))
    assert any(outcome.attempts > 1 for outcome in outcomes)  # type: ignore[union-attr]


def test_one_refused_recipient_and_all_refused(smtp_sink: SMTPSink) -> None:
    """550 for one recipient is in Delivery.refused; 550 for all is reported once, unretried."""
    failures = Failures()
    sleeps: list[float] = []
    smtp_sink.faults = FaultPlan(reject="bad*")
    mailer = ThreadedMailer(smtp_sink.settings, sleep=sleeps.append, on_failure=failures)
    partly = [mailer.send(make_message(n, to="ok@example.com, bad@example.com")) for n in range(5)]
    wholly = [mailer.send(make_message(n, to="bad@example.com")) for n in range(5, 10)]
    mailer.close(10)

    assert all(["bad@example.com"] == list(f.result().refused) for f in partly)
    assert all(isinstance(f.exception(), PermanentFailure) for f in wholly)
    assert 5 == len(failures.calls)
    assert [] == sleeps
    assert {f"message {n}" for n in range(5)} == _subjects(smtp_sink.wait_for(5))


def test_close_delivers_everything_queued(smtp_sink: SMTPSink) -> None:
    """1,000 queued, then close(): all 1,000 are at the sink."""
    mailer = ThreadedMailer(smtp_sink.settings, workers=4, max_queue=1000)
    for number in range(1000):
        mailer.send(make_message(number))
    mailer.close(60)

    assert 1000 == len(smtp_sink.messages)


@pytest.mark.slow
def test_load_four_threads_through_one_mailer(smtp_sink: SMTPSink) -> None:
    """4 threads x 5,000 messages through one mailer: all arrive; the queue stays bounded."""
    per_thread, max_queue = 5000, 500
    mailer = ThreadedMailer(smtp_sink.settings, workers=4, max_queue=max_queue)
    message = make_message(0)
    peaks: list[int] = []

    def produce() -> None:
        for _ in range(per_thread):
            mailer.send(message, timeout=60)
            peaks.append(mailer._queue.qsize())

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    mailer.close(120)

    assert 4 * per_thread == len(smtp_sink.wait_for(4 * per_thread, timeout=60))
    assert max(peaks) <= max_queue


@pytest.fixture(autouse=True)
def _no_leftover_faults(smtp_sink: SMTPSink) -> Iterator[None]:
    yield
    smtp_sink.faults = FaultPlan()


def test_futures_work_with_concurrent_futures_helpers() -> None:
    """The Futures send() returns work with wait(), as_completed() and callbacks."""
    from concurrent.futures import as_completed, wait

    called: list[object] = []
    mailer = ThreadedMailer(MemoryTransport())
    futures = [mailer.send(make_message(number)) for number in range(20)]
    futures[0].add_done_callback(called.append)
    done, not_done = wait(futures, timeout=5)
    completed = list(as_completed(futures, timeout=5))
    mailer.close()

    assert (20, 0, 20) == (len(done), len(not_done), len(completed))
    assert [futures[0]] == called
