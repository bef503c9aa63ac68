"""RQMailer against a real redis-server and real RQ workers delivering to the real smtp_sink."""

from __future__ import annotations

import time
from concurrent.futures import wait
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from mailreset.errors import (
    ConfigurationError,
    InvalidMessage,
    MailerClosed,
    MailerUnavailable,
    PermanentFailure,
    TemporaryFailure,
)
from mailreset.mailers import Delivery, Mailer, Retry
from mailreset.testing._smtp import SMTPSink

rq = pytest.importorskip(
    "rq", reason="the RQ tests need the rq extra: pip install 'mailreset[rq]'"
)
redis = pytest.importorskip("redis")

from mailreset import rq as mailreset_rq  # noqa: E402 - after the importorskip above
from mailreset.rq import JobFuture, RQMailer  # noqa: E402
from tests.rq_support import (  # noqa: E402
    RedisServer,
    finish,
    kill_group,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.redis

NO_WAIT = Retry(attempts=5, initial=0.0, maximum=0.0)


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    """Where the test's RQ workers write their output (shown when a wait times out)."""
    return tmp_path / "workers.log"


def message(
    number: int = 0, *, to: str = "user@example.org", bcc: str | None = None
) -> EmailMessage:
    """A small reset-like message with its own Message-ID."""
    mail = EmailMessage()
    mail["From"] = "App <noreply@example.com>"
    mail["To"] = to
    if bcc is not None:
        mail["Bcc"] = bcc
    mail["Subject"] = f"Reset your password ({number})"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content(f"Open https://app.example/reset/token-{number} within 10 minutes.\n")
    return mail


def run_burst(
    server: RedisServer, sink: SMTPSink, log: Path, *, workers: int = 1, timeout: float = 60.0
) -> None:
    """Run ``workers`` burst-mode RQ workers until the queue is empty."""
    started = [start_worker(server.url, sink.host, sink.port, log) for _ in range(workers)]
    finish(started, timeout, log)


def test_rq_mailer_is_a_mailer(redis_server: RedisServer) -> None:
    """RQMailer implements the Mailer protocol."""
    with RQMailer(redis_server.url) as mailer:
        assert isinstance(mailer, Mailer)


def test_two_workers_deliver_a_thousand_messages_once_each(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """Two RQ workers deliver 1,000 enqueued messages, each exactly once, and every Future ends
    in its Delivery."""
    count = 1000
    with RQMailer(redis_server.url, retry=NO_WAIT) as mailer:
        futures = [mailer.send(message(number)) for number in range(count)]
        run_burst(redis_server, smtp_sink, worker_log, workers=2, timeout=120.0)
        mailer.flush(timeout=30.0)

    received = smtp_sink.wait_for(count, timeout=10.0)
    sent_ids = sorted(future.result(timeout=0).message_id for future in futures)
    assert count == len(received)
    assert sent_ids == sorted(str(captured.message["Message-ID"]) for captured in received)
    assert count == len(set(sent_ids))


def test_send_returns_once_redis_stored_the_job(
    redis_server: RedisServer, smtp_sink: SMTPSink
) -> None:
    """send() returns a running JobFuture whose job waits in Redis with plain-data arguments."""
    with RQMailer(redis_server.url) as mailer:
        future = mailer.send(message(1, bcc="hidden@example.net"))
        job = rq.job.Job.fetch(future.job_id, connection=mailer.queue.connection)

        assert isinstance(future, JobFuture)
        assert future.running()
        assert "queued" == job.get_status()
        assert "mailreset.rq.deliver" == job.func_name
        assert [str, list, bytes, str] == [type(argument) for argument in job.args]
        assert b"Bcc" not in job.args[2]
        assert ["user@example.org", "hidden@example.net"] == job.args[1]
        assert [] == smtp_sink.messages


def test_bcc_reaches_the_envelope_but_never_the_wire(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A Bcc recipient gets the message through the worker, without a Bcc header in it."""
    with RQMailer(redis_server.url) as mailer:
        future = mailer.send(message(2, bcc="hidden@example.net"))
        run_burst(redis_server, smtp_sink, worker_log)
        delivery = future.result(timeout=10.0)

    [captured] = smtp_sink.wait_for(1)
    assert ("user@example.org", "hidden@example.net") == captured.envelope_to
    assert b"hidden@example.net" not in captured.raw
    assert ("user@example.org", "hidden@example.net") == delivery.accepted
    assert "noreply@example.com" == delivery.envelope_from


def test_temporary_failure_is_retried_by_rq(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A message the server answers 451 twice is retried by RQ and delivered on attempt 3."""
    with smtp_sink.faulty(tempfail_first=2), RQMailer(redis_server.url, retry=NO_WAIT) as mailer:
        future = mailer.send(message(3))
        run_burst(redis_server, smtp_sink, worker_log)
        delivery = future.result(timeout=10.0)

    assert 1 == len(smtp_sink.wait_for(1))
    assert 3 == delivery.attempts


def test_temporary_failure_past_the_last_attempt_fails_the_job(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """When every attempt meets a 451, the job lands in the failed registry and the Future
    ends in TemporaryFailure."""
    retry = Retry(attempts=2, initial=0.0, maximum=0.0)
    with smtp_sink.faulty(tempfail_first=5), RQMailer(redis_server.url, retry=retry) as mailer:
        future = mailer.send(message(4))
        run_burst(redis_server, smtp_sink, worker_log)
        error = future.exception(timeout=10.0)
        failed = rq.registry.FailedJobRegistry(queue=mailer.queue)

        assert isinstance(error, TemporaryFailure)
        assert 451 == error.smtp_code
        assert [future.job_id] == failed.get_job_ids()
    assert [] == smtp_sink.messages


def test_permanent_failure_fails_at_once_and_stays_in_the_failed_registry(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A 550 is not retried: the job is failed with the server's reason kept by RQ, and the
    Future ends in PermanentFailure."""
    with (
        smtp_sink.faulty(reject="*@example.org"),
        RQMailer(redis_server.url, retry=NO_WAIT) as mailer,
    ):
        future = mailer.send(message(5))
        run_burst(redis_server, smtp_sink, worker_log)
        error = future.exception(timeout=10.0)
        failed = rq.registry.FailedJobRegistry(queue=mailer.queue)
        job = rq.job.Job.fetch(future.job_id, connection=mailer.queue.connection)
        reason = job.latest_result().exc_string

        assert isinstance(error, PermanentFailure)
        assert {"user@example.org": (550, "5.1.1 <user@example.org>: recipient rejected")} == (
            dict(error.recipients)
        )
        assert [future.job_id] == failed.get_job_ids()
        assert "PermanentFailure" in reason
        assert "550" in reason
        assert 1 == job.meta["mailreset"]["error"]["attempts"]


def test_a_worker_killed_mid_job_leaves_the_job_to_be_retried(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """A worker SIGKILLed while the server holds its DATA leaves the job started; once its
    heartbeat ran out, RQ's registry cleanup requeues it and another worker delivers it once."""
    with RQMailer(redis_server.url, retry=NO_WAIT, job_timeout=30) as mailer:
        with smtp_sink.faulty(delay=60.0):
            future = mailer.send(message(6))
            job = rq.job.Job.fetch(future.job_id, connection=mailer.queue.connection)
            worker = start_worker(redis_server.url, smtp_sink.host, smtp_sink.port, worker_log)
            try:
                wait_until(
                    lambda: "started" == job.get_status(), 30.0, "the worker taking the job"
                )
            finally:
                kill_group(worker)
        started = rq.registry.StartedJobRegistry(queue=mailer.queue)

        assert "started" == job.get_status()
        # RQ 2 lists "job_id:execution_id" here, RQ 3 the job id alone.
        assert [future.job_id] == [
            entry.partition(":")[0] for entry in started.get_job_ids(cleanup=False)
        ]

        # What any worker's maintenance does once the dead worker's heartbeat (job_timeout +
        # 60 s) ran out; the time is passed in instead of waited for.
        started.cleanup(timestamp=time.time() + 30 + 60 + 1)
        assert "queued" == job.get_status()

        run_burst(redis_server, smtp_sink, worker_log)
        delivery = future.result(timeout=10.0)

    assert 1 == len(smtp_sink.wait_for(1))
    assert 2 == delivery.attempts


def test_redis_crash_between_enqueue_and_work_loses_nothing(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """Messages whose send() returned survive a SIGKILL of Redis (AOF, appendfsync always):
    after the restart, workers deliver every one and the Futures still settle."""
    count = 200
    with RQMailer(redis_server.url, retry=NO_WAIT) as mailer:
        futures = [mailer.send(message(number)) for number in range(count)]
        redis_server.kill()
        redis_server.start()
        run_burst(redis_server, smtp_sink, worker_log)
        mailer.flush(timeout=30.0)

    assert count == len(smtp_sink.wait_for(count))
    assert all(isinstance(future.result(timeout=0), Delivery) for future in futures)


def test_send_raises_mailer_unavailable_when_redis_is_down(redis_server: RedisServer) -> None:
    """With Redis away, send() raises MailerUnavailable at once, chained to redis' error."""
    with RQMailer(redis_server.url) as mailer:
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(MailerUnavailable, match="Nothing was enqueued") as caught:
            mailer.send(message(7))
        elapsed = time.monotonic() - started

    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    assert elapsed < 2.0


def test_send_after_close_raises_mailer_closed(redis_server: RedisServer) -> None:
    """A closed RQMailer refuses new messages."""
    mailer = RQMailer(redis_server.url)
    mailer.close()

    with pytest.raises(MailerClosed):
        mailer.send(message(8))


def test_close_settles_pending_futures_with_mailer_closed(redis_server: RedisServer) -> None:
    """close() without workers ends the pending Futures in MailerClosed; the job stays queued."""
    mailer = RQMailer(redis_server.url)
    future = mailer.send(message(9))
    mailer.close()

    assert isinstance(future.exception(timeout=0), MailerClosed)
    assert [future.job_id] == mailer.queue.get_job_ids()


def test_flush_times_out_naming_the_pending_jobs(redis_server: RedisServer) -> None:
    """flush() with no worker running raises TimeoutError that says how many jobs wait."""
    with RQMailer(redis_server.url) as mailer:
        mailer.send(message(10))

        with pytest.raises(TimeoutError, match="1 job"):
            mailer.flush(timeout=0.2)


def test_invalid_message_is_refused_before_redis(redis_server: RedisServer) -> None:
    """A message without recipients raises InvalidMessage and enqueues nothing."""
    mail = message(11)
    del mail["To"]
    with RQMailer(redis_server.url) as mailer:
        with pytest.raises(InvalidMessage):
            mailer.send(mail)

        assert 0 == mailer.queue.count


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"job_timeout": 0}, "job_timeout"),
        ({"result_ttl": 1.5}, "result_ttl"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"queue_name": "two words"}, "queue_name"),
        ({"env_prefix": "MAIL-"}, "env_prefix"),
        ({"retry": 3}, "retry"),
    ],
)
def test_bad_settings_raise_configuration_error(options: dict[str, object], name: str) -> None:
    """Every bad setting is a ConfigurationError naming it, before Redis is contacted."""
    with pytest.raises(ConfigurationError, match=name):
        RQMailer("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


def test_a_queue_of_the_wrong_kind_is_a_configuration_error() -> None:
    """RQMailer refuses what is neither a Queue, a Redis nor a URL."""
    with pytest.raises(ConfigurationError, match=r"rq\.Queue"):
        RQMailer(42)  # type: ignore[arg-type]


def test_deliver_uses_the_configured_worker_transport() -> None:
    """Called outside RQ, deliver() sends through the transport configure_worker set, Bcc
    restored into the envelope."""
    from mailreset.transports import Envelope, MemoryTransport

    transport = MemoryTransport()
    mailreset_rq.configure_worker(lambda: transport, env_prefix="TEST_RQ_")
    try:
        outgoing = Envelope.from_message(message(12, bcc="hidden@example.net"))
        result = mailreset_rq.deliver(
            outgoing.sender, list(outgoing.recipients), outgoing.data, "TEST_RQ_"
        )
    finally:
        mailreset_rq._factories.pop("TEST_RQ_", None)
        mailreset_rq._transports.pop("TEST_RQ_", None)

    [captured] = transport.envelopes
    assert ("user@example.org", "hidden@example.net") == captured.recipients
    assert ["user@example.org", "hidden@example.net"] == result["accepted"]
    assert outgoing.data == captured.data


def test_futures_settle_for_many_jobs_in_one_poll(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> None:
    """Futures of jobs finished while nobody waited are all settled by the watcher."""
    with RQMailer(redis_server.url) as mailer:
        futures = [mailer.send(message(number)) for number in range(20)]
        run_burst(redis_server, smtp_sink, worker_log)
        done, not_done = wait(futures, timeout=10.0)

    assert (20, 0) == (len(done), len(not_done))
