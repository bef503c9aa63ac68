"""ThreadedMailer across a real os.fork(), and asleep when idle (counted context switches)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from mailreset import Delivery, ThreadedMailer
from mailreset.testing import FaultPlan, SMTPSink
from tests.mail_factory import make_message
from tests.process_support import run_in_fork, voluntary_switches

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")


def _send_and_close(mailer: ThreadedMailer, numbers: range) -> Callable[[], None]:
    def work() -> None:
        futures = [mailer.send(make_message(number)) for number in numbers]
        mailer.close(20)
        assert all(future.result(0).accepted for future in futures)

    return work


def _subjects(sink: SMTPSink, count: int) -> list[str]:
    return sorted(message.subject for message in sink.wait_for(count, timeout=20))


def test_made_before_fork_and_used_only_in_the_child(smtp_sink: SMTPSink) -> None:
    """gunicorn --preload: made in the parent, never used there; the child delivers."""
    mailer = ThreadedMailer(smtp_sink.settings, workers=4)

    assert 0 == run_in_fork(_send_and_close(mailer, range(10)))
    assert [f"message {n}" for n in range(10)] == sorted(
        _subjects(smtp_sink, 10), key=lambda s: int(s.split()[1])
    )
    time.sleep(0.3)  # time for a stray duplicate to arrive
    assert 10 == len(smtp_sink.messages)
    mailer.close(5)


def test_fork_while_the_parent_is_sending(smtp_sink: SMTPSink) -> None:
    """Messages in flight in the parent at the fork stay the parent's: each arrives once."""
    smtp_sink.faults = FaultPlan(delay=0.05)
    mailer = ThreadedMailer(smtp_sink.settings, workers=2)
    parents = [mailer.send(make_message(number)) for number in range(20)]
    try:
        code = run_in_fork(_send_and_close(mailer, range(100, 105)))
        mailer.close(30)
    finally:
        smtp_sink.faults = FaultPlan()

    assert 0 == code
    assert all(future.result(0).accepted for future in parents)
    expected = {f"message {n}" for n in [*range(20), *range(100, 105)]}
    assert expected == set(_subjects(smtp_sink, 25))
    time.sleep(0.3)
    assert 25 == len(smtp_sink.messages)  # nothing the parent queued was sent by the child


def test_many_threads_first_use_it_at_once_in_the_child(smtp_sink: SMTPSink) -> None:
    """gthread workers: 8 threads of a child send at once first thing; each message arrives."""
    mailer = ThreadedMailer(smtp_sink.settings, workers=4)
    mailer.send(make_message(0)).result(10)  # the parent's threads and state exist

    def work() -> None:
        start = threading.Barrier(8)
        futures: list[Future[Delivery]] = []
        lock = threading.Lock()

        def sender(first: int) -> None:
            start.wait(10)
            mine = [mailer.send(make_message(number)) for number in range(first, first + 5)]
            with lock:
                futures.extend(mine)

        threads = [threading.Thread(target=sender, args=(100 + 10 * n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert all(future.result(20).accepted for future in futures)
        assert 40 == len(futures)
        mailer.close(20)

    code = run_in_fork(work)
    mailer.close(10)

    assert 0 == code
    assert 41 == len(_subjects(smtp_sink, 41))
    time.sleep(0.3)
    assert 41 == len(smtp_sink.messages)


def test_flush_in_a_child_does_not_wait_for_the_parents_queue(smtp_sink: SMTPSink) -> None:
    """The child's flush() is about the child's messages, not the copy of the parent's queue."""
    smtp_sink.faults = FaultPlan(delay=0.2)
    mailer = ThreadedMailer(smtp_sink.settings, workers=1)
    parents = [mailer.send(make_message(number)) for number in range(5)]

    def work() -> None:
        assert mailer.flush(2)
        assert "workers=0/" in repr(mailer)

    try:
        code = run_in_fork(work)
        mailer.close(30)
    finally:
        smtp_sink.faults = FaultPlan()

    assert 0 == code
    assert all(future.result(0).accepted for future in parents)


def test_with_a_spool_made_before_fork(smtp_sink: SMTPSink, tmp_path: Path) -> None:
    """A spooled mailer starts in the parent; the child spools and delivers its own, once."""
    folder = tmp_path / "spool"
    mailer = ThreadedMailer(smtp_sink.settings, workers=2, spool=folder)

    assert 0 == run_in_fork(_send_and_close(mailer, range(7)))
    mailer.send(make_message(50)).result(10)
    mailer.close(10)

    assert {*(f"message {n}" for n in range(7)), "message 50"} == set(_subjects(smtp_sink, 8))
    time.sleep(0.3)
    assert 8 == len(smtp_sink.messages)
    assert [] == list(folder.glob("*.msg"))


# -- idle means asleep -------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts switches in /proc")
@pytest.mark.parametrize("spool", [False, True], ids=["plain", "spool"])
def test_an_idle_mailer_sleeps(smtp_sink: SMTPSink, tmp_path: Path, spool: bool) -> None:
    """After a burst, idle workers wake no more than a few times in 2 s (polling: ~100)."""
    mailer = ThreadedMailer(
        smtp_sink.settings, workers=4, spool=tmp_path / "spool" if spool else None
    )
    futures = [mailer.send(make_message(number)) for number in range(40)]
    assert all(future.result(10).accepted for future in futures)
    time.sleep(0.2)  # the last replies, logging and replay threads settle
    threads = [thread for thread in mailer._pool.threads if thread.is_alive()]
    ids = [thread.native_id for thread in threads if thread.native_id is not None]
    assert ids

    before = voluntary_switches(*ids)
    time.sleep(2.0)
    woke = voluntary_switches(*ids) - before
    mailer.close(10)

    # A 20 ms poll would be ~100 wake-ups per thread in 2 s; blocking on the queue is 0.
    assert woke <= 2 * len(ids), f"{len(ids)} idle workers woke {woke} times in 2 s"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts switches in /proc")
def test_idle_timeout_is_the_only_wake_up(smtp_sink: SMTPSink) -> None:
    """With idle_timeout=1 a worker wakes once, closes its connection and ends."""
    mailer = ThreadedMailer(smtp_sink.settings, idle_timeout=1.0)
    mailer.send(make_message(1)).result(10)
    [worker] = mailer._pool.threads
    assert worker.native_id is not None
    before = voluntary_switches(worker.native_id)
    time.sleep(0.8)
    woke = voluntary_switches(worker.native_id) - before
    worker.join(5)

    assert woke <= 1
    assert not worker.is_alive()
    assert "workers=0/" in repr(mailer)
    mailer.close(5)
