"""RQMailer's promises under real faults: a fork, an idle process, a frozen Redis, a dead worker.

Real redis-server, real ``rq worker`` processes, the real smtp_sink; faults made for real (os.fork,
SIGSTOP, SIGKILL) and the arrivals counted.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mailreset.errors import MailerUnavailable, PermanentFailure
from mailreset.mailers import Delivery
from mailreset.testing._smtp import SMTPSink

rq = pytest.importorskip(
    "rq", reason="the RQ tests need the rq extra: pip install 'mailreset[rq]'"
)
redis = pytest.importorskip("redis")

from mailreset.rq import RQMailer  # noqa: E402 - after the importorskip above
from tests.process_support import voluntary_switches  # noqa: E402
from tests.rq_support import RedisServer, kill_group, start_worker, wait_until  # noqa: E402
from tests.test_rq import NO_WAIT, message, run_burst  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    """Where the test's RQ workers write their output (shown when a wait times out)."""
    return tmp_path / "workers.log"


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mailreset-rq-watch-")]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_an_idle_mailer_s_watcher_sleeps(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """Once every Future settled, the watcher thread does not wake up at all: over a second of
    idleness it makes (almost) no context switch, where polling every 50 ms would make ~20."""
    # Only this mailer's watcher: one of an earlier test may still be finishing its close.
    earlier = set(_watchers())
    with RQMailer(redis_server.url, retry=NO_WAIT) as mailer:
        future = mailer.send(message(1))
        run_burst(redis_server, smtp_sink, worker_log)
        future.result(timeout=30.0)
        [watcher] = [thread for thread in _watchers() if thread not in earlier]
        time.sleep(0.2)  # let the thread reach its wait after settling the last Future
        before = voluntary_switches(watcher.native_id)
        time.sleep(1.0)
        after = voluntary_switches(watcher.native_id)

        assert watcher.is_alive()
        assert after - before <= 2

        # And it wakes for the next message.
        again = mailer.send(message(2))
        run_burst(redis_server, smtp_sink, worker_log)
        assert isinstance(again.result(timeout=30.0), Delivery)


# Python 3.12+ warns about fork() with threads alive; the child uses only its own threads.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_mailer_made_before_fork_works_in_the_child(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """An RQMailer made and used before os.fork() (gunicorn --preload) sends from both the
    parent and the child, and each side's Futures settle: every message arrives once."""
    per_side = 5
    worker = start_worker(
        redis_server.url, smtp_sink.host, smtp_sink.port, worker_log, burst=False
    )
    try:
        with RQMailer(redis_server.url, retry=NO_WAIT) as mailer:
            mailer.send(message(0)).result(timeout=30.0)  # watcher and connections in use
            child = os.fork()
            if child == 0:  # pragma: no cover - the child reports through its exit code
                try:
                    futures = [mailer.send(message(100 + n)) for n in range(per_side)]
                    mailer.flush(timeout=60.0)
                    ok = all(isinstance(f.result(timeout=0), Delivery) for f in futures)
                    os._exit(0 if ok else 1)
                except BaseException:
                    os._exit(2)
            futures = [mailer.send(message(200 + n)) for n in range(per_side)]
            mailer.flush(timeout=60.0)
            _, status = os.waitpid(child, 0)

            assert 0 == os.waitstatus_to_exitcode(status)
            assert all(isinstance(f.result(timeout=0), Delivery) for f in futures)
        received = smtp_sink.wait_for(1 + 2 * per_side, timeout=30.0)
    finally:
        kill_group(worker)

    ids = [str(captured.message["Message-ID"]) for captured in received]
    assert 1 + 2 * per_side == len(ids) == len(set(ids))


def test_send_to_a_frozen_redis_raises_mailer_unavailable_within_5_seconds(
    redis_server: RedisServer,
) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP) makes send() raise
    MailerUnavailable within 5 s, saying the job may still be stored; once Redis runs again
    the same mailer sends."""
    assert redis_server.process is not None
    with RQMailer(redis_server.url) as mailer:
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(MailerUnavailable, match="may still store") as caught:
                mailer.send(message(1))
            elapsed = time.monotonic() - started
        finally:
            redis_server.process.send_signal(signal.SIGCONT)

        assert isinstance(caught.value.__cause__, redis.exceptions.TimeoutError)
        assert elapsed < 5.0
        future = mailer.send(message(2))
        assert future.job_id in mailer.queue.get_job_ids()
        # The frozen send's job may have landed once Redis woke up: at most once.
        assert len(mailer.queue.get_job_ids()) <= 2


def test_a_connection_without_socket_timeout_is_warned_about(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis connection of the user's own without socket_timeout could block send() for as
    long as Redis hangs: RQMailer says so, naming the settings to give it."""
    connection = redis.Redis(host="127.0.0.1", port=redis_server.port)
    with caplog.at_level(logging.WARNING, logger="mailreset"):
        RQMailer(connection).close()
    connection.close()

    assert "socket_timeout" in caplog.text
    assert "socket_connect_timeout" in caplog.text


def test_a_permanent_failure_is_sent_once_and_settles_before_rq_gives_up(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A 550 costs one SMTP attempt, whatever RQ's retry budget for dead workers: the re-runs
    RQ makes of a failed job repeat the recorded outcome without contacting the server."""
    with (
        smtp_sink.faulty(reject="*@example.org"),
        RQMailer(redis_server.url, retry=NO_WAIT) as mailer,
    ):
        future = mailer.send(message(3))
        run_burst(redis_server, smtp_sink, worker_log)
        error = future.exception(timeout=10.0)
        job = rq.job.Job.fetch(future.job_id, connection=mailer.queue.connection)

        assert isinstance(error, PermanentFailure)
        assert "failed" == job.get_status()
        assert 1 == job.meta["mailreset"]["attempt"]
    # Each SMTP attempt logs one line in the worker: the re-runs made none.
    assert 1 == worker_log.read_text().count("failed (permanent")
    assert [] == smtp_sink.messages


def test_a_delivery_after_a_dead_worker_says_maybe_duplicated(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A worker SIGKILLed mid-DATA leaves the outcome unknown: the retried job's Delivery
    says maybe_duplicated, and counts the lost attempt."""
    with RQMailer(redis_server.url, retry=NO_WAIT, job_timeout=30) as mailer:
        with smtp_sink.faulty(delay=60.0):
            future = mailer.send(message(6))
            job = rq.job.Job.fetch(future.job_id, connection=mailer.queue.connection)
            worker = start_worker(redis_server.url, smtp_sink.host, smtp_sink.port, worker_log)
            try:
                wait_until(lambda: "started" == job.get_status(), 30.0, "the worker's start")
            finally:
                kill_group(worker)
        started = rq.registry.StartedJobRegistry(queue=mailer.queue)
        started.cleanup(timestamp=time.time() + 30 + 60 + 1)
        run_burst(redis_server, smtp_sink, worker_log)
        delivery = future.result(timeout=10.0)

    assert delivery.maybe_duplicated
    assert 2 == delivery.attempts
