"""CeleryMailer against a real redis-server and real ``celery worker`` processes delivering to
the real smtp_sink."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

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
from mailreset.testing import CapturedMessage
from mailreset.testing._smtp import SMTPSink
from mailreset.transports import Envelope, MemoryTransport
from tests.mail_factory import make_message
from tests.process_support import run_in_fork

celery = pytest.importorskip(
    "celery", reason="the Celery tests need the celery extra: pip install 'mailreset[celery]'"
)
redis = pytest.importorskip("redis")

import mailreset.celery as mailreset_celery  # noqa: E402 - after the importorskip above
from mailreset.celery import CeleryMailer, TaskFuture  # noqa: E402
from tests.celery_support import (  # noqa: E402
    make_user_app,
    smtp_client_sockets,
    smtp_clients,
    start_worker,
    stop_workers,
)
from tests.rq_support import RedisServer, kill_group, wait_until  # noqa: E402

pytestmark = pytest.mark.redis

NO_WAIT = Retry(attempts=5, initial=0.0, maximum=0.0)
#: How long Redis leaves a dead worker's unacknowledged message before another worker gets it.
VISIBILITY_TIMEOUT = 5.0

StartWorkers = Callable[..., list["subprocess.Popen[bytes]"]]


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A sink of this test's own, not the session's shared one: these tests count the SMTP
    connections to its port, and the shared sink also holds other tests' open connections."""
    with SMTPSink() as sink:
        yield sink


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    """Where the test's Celery workers write their output (shown when a wait times out)."""
    return tmp_path / "workers.log"


@pytest.fixture
def workers(
    redis_server: RedisServer, smtp_sink: SMTPSink, worker_log: Path
) -> Iterator[StartWorkers]:
    """Start ``count`` Celery workers on the test's Redis and sink; all killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int = 1, **options: Any) -> list[subprocess.Popen[bytes]]:
        new = [
            start_worker(redis_server.url, smtp_sink.host, smtp_sink.port, worker_log, **options)
            for _ in range(count)
        ]
        started.extend(new)
        return new

    yield start
    for worker in started:
        kill_group(worker)


def settle(mailer: CeleryMailer, log: Path, timeout: float = 60.0) -> None:
    """``mailer.flush(timeout)``, with the workers' log in the error when it times out."""
    try:
        mailer.flush(timeout=timeout)
    except TimeoutError as error:
        log_tail = log.read_text(errors="replace")[-4000:]
        raise TimeoutError(f"{error}; workers' log:\n{log_tail}") from None


def deliver_one(
    mailer: CeleryMailer, message: EmailMessage, workers: StartWorkers, log: Path
) -> TaskFuture:
    """Send ``message``, start one worker, and wait until the mailer's Futures settled."""
    future = mailer.send(message)
    workers(1)
    settle(mailer, log)
    return future


def queued_tasks(url: str, queue: str = "mail") -> list[dict[str, Any]]:
    """The task messages waiting in ``queue``, as kombu stored them in Redis."""
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def message_ids(messages: list[CapturedMessage]) -> list[str]:
    """The Message-ID headers of captured messages, sorted."""
    return sorted(str(captured.message["Message-ID"]) for captured in messages)


# -- the contract -----------------------------------------------------------------------------


def test_celery_mailer_is_a_mailer(redis_server: RedisServer) -> None:
    """CeleryMailer implements the Mailer protocol."""
    with CeleryMailer(redis_server.url) as mailer:
        assert isinstance(mailer, Mailer)


def test_making_a_mailer_needs_no_broker() -> None:
    """A CeleryMailer is made while nothing listens; only send() finds out."""
    with (
        CeleryMailer("redis://127.0.0.1:1/0") as mailer,
        pytest.raises(MailerUnavailable, match="Nothing was published"),
    ):
        mailer.send(make_message(1))


def test_two_workers_deliver_a_thousand_messages_once_each(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """Two Celery workers deliver 1,000 published messages, each exactly once, and every Future
    ends in its Delivery."""
    count = 1000
    # aiosmtpd's start-up probe leaves a connection behind that may still be closing; only
    # connections made after this reading count, whatever state they are in.
    before = smtp_client_sockets(smtp_sink.port)
    with CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer:
        futures = [mailer.send(make_message(number)) for number in range(count)]
        started = workers(2)
        settle(mailer, worker_log, timeout=180.0)
        made = {
            local_port: state
            for local_port, state in smtp_client_sockets(smtp_sink.port).items()
            if local_port not in before
        }
        stop_workers(started, worker_log)

    received = smtp_sink.wait_for(count, timeout=10.0)
    sent_ids = sorted(future.result(timeout=0).message_id for future in futures)
    assert count == len(received)
    assert sent_ids == message_ids(received)
    assert count == len(set(sent_ids))
    # One SMTP connection per worker process, kept across its tasks: two made, both still
    # open (a connection closed on the way would show as TIME_WAIT for a minute).
    assert ["01", "01"] == sorted(made.values())


def test_send_returns_once_redis_stored_a_json_task_without_smtp_settings(
    redis_server: RedisServer, smtp_sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an app whose default serializer is pickle, the task in Redis is JSON plain data:
    sender, recipients (Bcc included), wire bytes without Bcc; no password or SMTP setting
    from the web process's environment reaches Redis."""
    monkeypatch.setenv("MAIL_SERVER", "smtp.secret-host.example")
    monkeypatch.setenv("MAIL_USERNAME", "app-user")
    monkeypatch.setenv("MAIL_PASSWORD", "hunter2-password")
    app = celery.Celery(
        "webapp", broker=redis_server.url, backend=redis_server.url, set_as_current=False
    )
    app.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    with CeleryMailer(app, queue="mail") as mailer:
        future = mailer.send(make_message(1, bcc="hidden@example.net"))
        [stored] = queued_tasks(redis_server.url)
        everything = _dump(redis_server.url)

    assert isinstance(future, TaskFuture)
    assert "application/json" == stored["content-type"]
    assert "mailreset.deliver" == stored["headers"]["task"]
    assert future.task_id == stored["headers"]["id"]
    args, kwargs, _ = json.loads(base64.b64decode(stored["body"]))
    job = kwargs["job"]
    assert [] == args
    assert ["user@example.com", "hidden@example.net"] == job["recipients"]
    assert "app@example.com" == job["sender"]
    assert "<1.test@example.com>" == job["message_id"]
    assert "Bcc" not in job["data"]
    assert Envelope.from_message(make_message(1, bcc="hidden@example.net")).data == (
        job["data"].encode("ascii")
    )
    assert "MAIL_" == job["env_prefix"]
    for secret in (b"hunter2", b"app-user", b"secret-host"):
        assert secret not in everything
    assert [] == smtp_sink.messages


def _dump(url: str) -> bytes:
    """Every key and value in the Redis database, as one blob to search."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter():
            parts.append(key)
            kind = client.type(key)
            if kind == b"string":
                parts.append(client.get(key) or b"")
            elif kind == b"list":
                parts.extend(client.lrange(key, 0, -1))
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind in {b"set", b"zset"}:
                parts.extend(client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1))
    finally:
        client.close()
    return b"\n".join(parts)


def test_an_apps_own_workers_run_the_task_in_json_whatever_its_serializer(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """CeleryMailer(app) on a project's pickle-by-default app, and that app's own workers
    (`celery -A proj worker`, with register_task): the message is delivered."""
    with CeleryMailer(make_user_app(redis_server.url), queue="mail") as mailer:
        future = mailer.send(make_message(30))
        # Celery refuses to accept pickle as root unless told so (CI runs as root).
        workers(1, app="tests.celery_support.user_app", extra_env={"C_FORCE_ROOT": "1"})
        settle(mailer, worker_log)

    assert "<30.test@example.com>" == future.result(timeout=0).message_id
    assert ["<30.test@example.com>"] == message_ids(smtp_sink.wait_for(1))
    assert "userapp" in worker_log.read_text(errors="replace")


def test_bcc_reaches_the_envelope_but_never_the_wire(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """A Bcc recipient gets the message through the worker, without a Bcc header in it."""
    with CeleryMailer(redis_server.url) as mailer:
        future = deliver_one(
            mailer, make_message(2, bcc="hidden@example.net"), workers, worker_log
        )
        delivery = future.result(timeout=0)

    [captured] = smtp_sink.wait_for(1)
    assert ("user@example.com", "hidden@example.net") == captured.envelope_to
    assert b"hidden@example.net" not in captured.raw
    assert ("user@example.com", "hidden@example.net") == delivery.accepted
    assert "app@example.com" == delivery.envelope_from
    assert 1 == delivery.attempts


def test_an_eight_bit_message_travels_as_base64_and_arrives_intact(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """Bytes that are not ASCII cross the JSON task as base64 and reach the server unchanged."""
    outgoing = Envelope(
        sender="app@example.com",
        recipients=("user@example.com",),
        data=b"Subject: caf\xc3\xa9\r\nMessage-ID: <8bit@example.com>\r\n\r\ncaf\xc3\xa9\r\n",
        message_id="<8bit@example.com>",
    )
    with CeleryMailer(redis_server.url) as mailer:
        future = mailer.send(outgoing)
        [stored] = queued_tasks(redis_server.url)
        workers(1)
        settle(mailer, worker_log)

    job = json.loads(base64.b64decode(stored["body"]))[1]["job"]
    assert "base64" == job["encoding"]
    assert "<8bit@example.com>" == future.result(timeout=0).message_id
    [captured] = smtp_sink.wait_for(1)
    assert "café" in captured.raw.decode("utf-8")


def test_temporary_failure_is_retried_by_celery(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """A message the server answers 451 twice is retried by Celery and delivered on attempt 3."""
    with (
        smtp_sink.faulty(tempfail_first=2),
        CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer,
    ):
        future = deliver_one(mailer, make_message(3), workers, worker_log)
        delivery = future.result(timeout=0)

    assert 1 == len(smtp_sink.wait_for(1))
    assert 3 == delivery.attempts


def test_temporary_failure_past_the_last_attempt_fails_the_task(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """When every attempt meets a 451, the Future ends in TemporaryFailure with the reply, and
    Celery's own result says FAILURE."""
    retry = Retry(attempts=2, initial=0.0, maximum=0.0)
    with smtp_sink.faulty(tempfail_first=5), CeleryMailer(redis_server.url, retry=retry) as mailer:
        future = deliver_one(mailer, make_message(4), workers, worker_log)
        error = future.exception(timeout=0)
        result = mailer.app.AsyncResult(future.task_id)

        assert isinstance(error, TemporaryFailure)
        assert 451 == error.smtp_code
        assert "FAILURE" == result.state
        assert isinstance(result.result, TemporaryFailure)
    assert [] == smtp_sink.messages


def test_permanent_failure_fails_at_once_with_the_servers_reason(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """A 550 is not retried: the Future ends in PermanentFailure with the refused recipient,
    after one attempt."""
    with (
        smtp_sink.faulty(reject="*@example.com"),
        CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer,
    ):
        future = deliver_one(mailer, make_message(5, to="user@example.com"), workers, worker_log)
        error = future.exception(timeout=0)
        backend = mailer.app.backend
        stored = backend.decode(backend.get(backend.get_key_for_task(future.task_id)))["result"]

    assert isinstance(error, PermanentFailure)
    assert {"user@example.com": (550, "5.1.1 <user@example.com>: recipient rejected")} == (
        dict(error.recipients)
    )
    assert 1 == stored["mailreset"]["attempts"]
    assert "PermanentFailure" == stored["exc_type"]
    # The worker logs the failure once the task returned, which may be after the Future ended.
    wait_until(
        lambda: "PermanentFailure" in worker_log.read_text(errors="replace"),
        30.0,
        "the worker logging the PermanentFailure",
    )


# -- faults made for real ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_task_leaves_its_message_to_another_worker(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """A worker SIGKILLed (pool and all) while it sends leaves its message unacknowledged in
    Redis; once the visibility timeout ran out, the other worker delivers it, once."""
    with CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer:
        # The first worker's session stalls in DATA and then drops without storing: only a
        # second delivery can put the message in the sink.
        with smtp_sink.faulty(delay=120.0, drop_after_data=True):
            [first] = workers(1, visibility_timeout=VISIBILITY_TIMEOUT)
            future = mailer.send(make_message(6))
            wait_until(
                lambda: smtp_clients(smtp_sink.port) > 0, 60.0, "the worker connecting to SMTP"
            )
            kill_group(first)
            assert not future.done()
        workers(1, visibility_timeout=VISIBILITY_TIMEOUT)
        settle(mailer, worker_log, timeout=90.0)
        delivery = future.result(timeout=0)

    [captured] = smtp_sink.wait_for(1)
    assert "<6.test@example.com>" == str(captured.message["Message-ID"]) == delivery.message_id
    assert -9 == first.returncode


@pytest.mark.slow
def test_a_pool_process_killed_mid_task_has_its_message_requeued(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """When only the pool process running the task dies, reject_on_worker_lost requeues the
    message at once and the worker's new pool process delivers it."""
    with CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer:
        with smtp_sink.faulty(delay=120.0, drop_after_data=True):
            [worker] = workers(1, visibility_timeout=300.0)
            future = mailer.send(make_message(7))
            wait_until(
                lambda: smtp_clients(smtp_sink.port) > 0, 60.0, "the worker connecting to SMTP"
            )
            wait_until(
                lambda: len(_children(worker.pid)) == 1, 60.0, "the worker's one pool process"
            )
            [child] = _children(worker.pid)
            kill_pid(child)
        settle(mailer, worker_log, timeout=60.0)
        delivery = future.result(timeout=0)

    [captured] = smtp_sink.wait_for(1)
    assert delivery.message_id == str(captured.message["Message-ID"])
    assert None is worker.poll()
    assert "WorkerLostError" in worker_log.read_text(errors="replace")


def _children(pid: int) -> list[int]:
    """The live children of process ``pid``, whichever of its threads started them."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(part) for part in (task / "children").read_text().split()]
        except OSError:  # the thread ended while we looked
            continue
    return children


def kill_pid(pid: int) -> None:
    """SIGKILL one process."""
    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_redis_restarted_mid_run_loses_nothing(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """Redis SIGKILLed and restarted while two workers are each mid-task and the rest of the
    messages wait in Redis: every message whose send() returned arrives (at least once: the
    two in flight may arrive twice) and every Future settles in a Delivery.

    The crash comes while each worker holds its one message (prefetch 1, so no worker is
    fetching): kombu's Redis transport pops a message and records it as unacknowledged in two
    steps, and a crash between them loses that message (see the README).
    """
    count = 200
    with CeleryMailer(redis_server.url, retry=NO_WAIT) as mailer:
        futures = [mailer.send(make_message(number)) for number in range(count)]
        workers(2, visibility_timeout=VISIBILITY_TIMEOUT)
        wait_until(lambda: len(smtp_sink.messages) >= count // 4, 120.0, "a quarter delivered")
        with smtp_sink.faulty(delay=5.0):
            # From here every DATA stalls: wait until each worker took one more message.
            taken = _log_count(worker_log, "] received")
            wait_until(
                lambda: (
                    _log_count(worker_log, "] received") >= taken + 2
                    and _log_count(worker_log, "] received")
                    == _log_count(worker_log, "] succeeded in") + 2
                ),
                60.0,
                "each worker holding one stalled message",
            )
            redis_server.kill()
            redis_server.start()
        settle(mailer, worker_log, timeout=180.0)

    sent = sorted(future.result(timeout=0).message_id for future in futures)
    received = message_ids(smtp_sink.messages)
    assert sent == sorted(set(received))
    assert count + 2 >= len(received)
    assert all(isinstance(future.result(timeout=0), Delivery) for future in futures)


def _log_count(log: Path, marker: str) -> int:
    return log.read_text(errors="replace").count(marker)


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "fresh"])
def test_send_raises_mailer_unavailable_within_5s_when_redis_is_frozen(
    redis_server: RedisServer, connected: bool
) -> None:
    """With Redis stopped (SIGSTOP: the port still accepts, nothing answers), send() raises
    MailerUnavailable within 5 s, whether the mailer had a connection or not."""
    assert redis_server.process is not None
    with CeleryMailer(redis_server.url) as mailer:
        if connected:
            mailer.send(make_message(8))
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(MailerUnavailable, match="Nothing was published"):
                mailer.send(make_message(9))
            elapsed = time.monotonic() - started
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        # Back again: the mailer publishes on a new connection.
        mailer.send(make_message(10))

    assert elapsed < 5.0


def test_send_raises_mailer_unavailable_when_redis_is_down(redis_server: RedisServer) -> None:
    """With Redis away, send() raises MailerUnavailable at once, and nothing is kept."""
    with CeleryMailer(redis_server.url) as mailer:
        mailer.send(make_message(11))
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(MailerUnavailable, match="Nothing was published"):
            mailer.send(make_message(12))
        elapsed = time.monotonic() - started

    assert elapsed < 5.0


# -- the mailer's own life --------------------------------------------------------------------


def test_send_after_close_raises_mailer_closed(redis_server: RedisServer) -> None:
    """A closed CeleryMailer refuses new messages."""
    mailer = CeleryMailer(redis_server.url)
    mailer.close()

    with pytest.raises(MailerClosed):
        mailer.send(make_message(13))


def test_close_settles_pending_futures_with_mailer_closed(redis_server: RedisServer) -> None:
    """close() without workers ends the pending Futures in MailerClosed; the task stays."""
    mailer = CeleryMailer(redis_server.url)
    future = mailer.send(make_message(14))
    mailer.close()

    assert isinstance(future.exception(timeout=0), MailerClosed)
    assert [future.task_id] == [
        stored["headers"]["id"] for stored in queued_tasks(redis_server.url)
    ]


def test_flush_times_out_naming_the_pending_tasks(redis_server: RedisServer) -> None:
    """flush() with no worker running raises TimeoutError that says how many tasks wait."""
    with CeleryMailer(redis_server.url) as mailer:
        mailer.send(make_message(15))

        with pytest.raises(TimeoutError, match="1 task"):
            mailer.flush(timeout=0.2)


def test_an_idle_watcher_asks_redis_nothing(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """Once every Future settled, the watcher sleeps: Redis sees no MGET while it idles."""
    client = redis.Redis.from_url(redis_server.url)

    def mgets() -> int:
        stats = client.info("commandstats").get("cmdstat_mget", {})
        return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0

    with CeleryMailer(redis_server.url, poll_interval=0.01) as mailer:
        future = deliver_one(mailer, make_message(16), workers, worker_log)
        before = mgets()
        time.sleep(0.5)  # fifty poll intervals
        after = mgets()

    client.close()
    assert isinstance(future.result(timeout=0), Delivery)
    assert before > 0
    assert before == after


def test_a_mailer_used_before_fork_works_in_the_child(
    redis_server: RedisServer, smtp_sink: SMTPSink, workers: StartWorkers, worker_log: Path
) -> None:
    """gunicorn --preload: a mailer that sent (and watched) in the parent publishes from a
    forked child on connections of its own, and the child's Future settles there."""
    workers(1)
    with CeleryMailer(redis_server.url) as mailer:
        mailer.send(make_message(20)).result(timeout=60.0)

        def in_child() -> None:
            mailer.send(make_message(21)).result(timeout=60.0)
            mailer.close()

        code = run_in_fork(in_child)
        mailer.send(make_message(22)).result(timeout=60.0)

    assert 0 == code
    assert [f"<{number}.test@example.com>" for number in (20, 21, 22)] == message_ids(
        smtp_sink.wait_for(3)
    )


def test_threads_sending_at_once_each_get_their_task_published(
    redis_server: RedisServer,
) -> None:
    """Eight request threads sending together: every send returns a Future and every task is
    in Redis once (each thread publishes on a connection of its own at a time)."""
    with CeleryMailer(redis_server.url) as mailer, ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda number: mailer.send(make_message(number)), range(200)))

    published = sorted(stored["headers"]["id"] for stored in queued_tasks(redis_server.url))
    assert sorted(future.task_id for future in futures) == published
    assert 200 == len(set(published))


def test_invalid_message_is_refused_before_redis(redis_server: RedisServer) -> None:
    """A message without recipients raises InvalidMessage and publishes nothing."""
    mail = make_message(17)
    del mail["To"]
    with CeleryMailer(redis_server.url) as mailer, pytest.raises(InvalidMessage):
        mailer.send(mail)

    assert [] == queued_tasks(redis_server.url)


def test_anything_but_a_message_is_a_type_error(redis_server: RedisServer) -> None:
    """send() of a string raises TypeError in the caller."""
    with CeleryMailer(redis_server.url) as mailer, pytest.raises(TypeError):
        mailer.send("To: user@example.com\n\nhello")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"publish_timeout": -1}, "publish_timeout"),
        ({"queue": "two words"}, "queue"),
        ({"env_prefix": "MAIL-"}, "env_prefix"),
        ({"retry": 3}, "retry"),
    ],
)
def test_bad_settings_raise_configuration_error(options: dict[str, object], name: str) -> None:
    """Every bad setting is a ConfigurationError naming it, before any broker is contacted."""
    with pytest.raises(ConfigurationError, match=name):
        CeleryMailer("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "match"),
    [(42, "celery.Celery app or a broker URL"), ("localhost:6379", "not a broker URL")],
)
def test_an_app_of_the_wrong_kind_is_a_configuration_error(target: object, match: str) -> None:
    """CeleryMailer refuses what is neither an app nor a broker URL."""
    with pytest.raises(ConfigurationError, match=match):
        CeleryMailer(target)  # type: ignore[arg-type]


def test_an_app_that_refuses_json_or_keeps_no_results_is_a_configuration_error() -> None:
    """An app whose workers would refuse JSON tasks, or with no result backend, is refused."""
    pickle_only = celery.Celery("a", broker="redis://127.0.0.1:1/0", set_as_current=False)
    pickle_only.conf.update(accept_content=["pickle"], result_backend="redis://127.0.0.1:1/0")
    no_results = celery.Celery("b", broker="redis://127.0.0.1:1/0", set_as_current=False)

    with pytest.raises(ConfigurationError, match="accept_content"):
        CeleryMailer(pickle_only)
    with pytest.raises(ConfigurationError, match="result_backend"):
        CeleryMailer(no_results)


def test_registering_on_an_app_is_idempotent() -> None:
    """Two mailers on one app share its one task, JSON and acks_late whatever the app says."""
    app = celery.Celery(
        "c", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0", set_as_current=False
    )
    app.conf.task_serializer = "pickle"
    with CeleryMailer(app), CeleryMailer(app):
        task = app.tasks[mailreset_celery.TASK_NAME]

    assert task is mailreset_celery.register_task(app)
    assert ("json", True, True) == (task.serializer, task.acks_late, task.reject_on_worker_lost)


# -- the worker side --------------------------------------------------------------------------


def test_the_module_app_is_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`celery -A mailreset.celery` finds `app`, made from MAILRESET_CELERY_*; without a broker
    it says which variable to set."""
    monkeypatch.setattr(mailreset_celery, "_module_app", None)
    monkeypatch.delenv("MAILRESET_CELERY_BROKER", raising=False)
    with pytest.raises(ConfigurationError, match="MAILRESET_CELERY_BROKER"):
        mailreset_celery.app  # the attribute access is the test

    monkeypatch.setenv("MAILRESET_CELERY_BROKER", "redis://127.0.0.1:1/2")
    monkeypatch.setenv("MAILRESET_CELERY_QUEUE", "outbox")
    monkeypatch.setenv("MAILRESET_CELERY_VISIBILITY_TIMEOUT", "7.5")
    app = mailreset_celery.app

    assert app is mailreset_celery.app
    assert "redis://127.0.0.1:1/2" == app.conf.broker_url == app.conf.result_backend
    assert "outbox" == app.conf.task_default_queue
    assert 7.5 == app.conf.broker_transport_options["visibility_timeout"]
    assert mailreset_celery.TASK_NAME in app.tasks


def test_deliver_uses_the_configured_worker_transport() -> None:
    """Called outside Celery, deliver() sends through the transport configure_worker set, Bcc
    restored into the envelope from the plain-data payload."""
    transport = MemoryTransport()
    mailreset_celery.configure_worker(lambda: transport, env_prefix="TEST_CELERY_")
    try:
        outgoing = Envelope.from_message(make_message(18, bcc="hidden@example.net"))
        payload = mailreset_celery.job_payload(outgoing, env_prefix="TEST_CELERY_", retry=Retry())
        result = mailreset_celery.deliver(json.loads(json.dumps(payload)))
    finally:
        mailreset_celery.configure_worker(MemoryTransport, env_prefix="TEST_CELERY_")

    [captured] = transport.envelopes
    assert outgoing == captured
    assert ["user@example.com", "hidden@example.net"] == result["accepted"]


@pytest.mark.parametrize(
    "change",
    [
        {"version": 99},
        {"encoding": "rot13"},
        {"data": "not base64!", "encoding": "base64"},
        {"recipients": []},
        {"sender": "no at sign\r\nBcc: x@example.com"},
    ],
)
def test_a_payload_that_is_not_ours_is_an_invalid_message(change: dict[str, object]) -> None:
    """A task is data from the broker: a payload of another version or a broken field raises
    InvalidMessage (never sent, never retried)."""
    payload = mailreset_celery.job_payload(
        Envelope.from_message(make_message(19)), env_prefix="MAIL_", retry=Retry()
    )
    with pytest.raises(InvalidMessage):
        mailreset_celery.envelope_from_payload({**payload, **change})
