"""RQMailer end to end, with 1 and 2 RQ workers, against ThreadedMailer in the same run.

End to end means from the first ``send`` until every Future settled (the server took every
message). The workers are warm ``rq worker`` processes (SimpleWorker, their SMTP settings in
MAIL_*) started before the clock runs; Redis runs with AOF and ``appendfsync always``, as the
README recommends. The capture sink (aiosmtpd) runs in a child process of its own, so its CPU
does not share a GIL with the mailers. Needs a ``redis-server`` binary; without one the
benchmark prints why and measures nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

from tests.rq_support import REDIS_SERVER, RedisServer, start_worker

from devtools.bench.harness import Comparison, Options, interleaved_medians, reset_messages
from mailreset import SMTPSettings, ThreadedMailer
from mailreset.rq import RQMailer

SINK = """
import sys
from mailreset.testing import SMTPSink
sink = SMTPSink().start()
print(sink.port, flush=True)
sys.stdin.read()
sink.stop()
"""


@contextmanager
def remote_sink() -> Iterator[int]:
    """A capture sink in a child process (its CPU off ours); yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        yield int(process.stdout.readline())
    finally:
        process.stdin.close()
        process.wait(10)


def end_to_end(
    send: Callable[[EmailMessage], object], flush: Callable[[], None]
) -> Callable[[list[EmailMessage]], float]:
    """A measurement: ``send`` every message, ``flush``, return messages per second."""

    def measure(messages: list[EmailMessage]) -> float:
        started = time.perf_counter()
        for message in messages:
            send(message)
        flush()
        return len(messages) / (time.perf_counter() - started)

    return measure


def run(options: Options) -> list[Comparison]:
    """Messages per second end to end: RQMailer with 1 and 2 workers, ThreadedMailer."""
    if not Path(REDIS_SERVER).exists():
        print("bench_rq: no redis-server binary; apt-get install redis-server", file=sys.stderr)
        return []
    count = 60 if options.quick else 300
    messages = reset_messages(count, tag="rq.", html=False)
    with tempfile.TemporaryDirectory(prefix="bench-rq-") as directory, remote_sink() as port:
        folder = Path(directory)
        server = RedisServer(folder).start()
        log = folder / "workers.log"
        workers = [
            start_worker(server.url, "127.0.0.1", port, log, burst=False, queue=queue)
            for queue in ("one", "two", "two")
        ]
        settings = SMTPSettings(host="127.0.0.1", port=port, local_hostname="bench")
        one = RQMailer(server.url, queue_name="one", poll_interval=0.01)
        two = RQMailer(server.url, queue_name="two", poll_interval=0.01)
        threaded = ThreadedMailer(settings)
        try:
            # Warm up: every worker connected to Redis and to the SMTP server once.
            for mailer in (one, two, two, threaded):
                mailer.send(messages[0])
            for mailer in (one, two, threaded):
                mailer.flush(timeout=60.0)
            if any(worker.poll() is not None for worker in workers):
                raise RuntimeError("an rq worker died: " + log.read_text(errors="replace"))
            medians = interleaved_medians(
                {
                    "one": lambda: end_to_end(one.send, lambda: one.flush(60.0))(messages),
                    "two": lambda: end_to_end(two.send, lambda: two.flush(60.0))(messages),
                    "threaded": lambda: end_to_end(threaded.send, lambda: threaded.flush(60.0))(
                        messages
                    ),
                },
                options.rounds,
            )
        finally:
            one.close()
            two.close()
            threaded.close(timeout=30.0)
            for worker in workers:
                worker.terminate()  # warm shutdown: the worker finishes its job and exits
            for worker in workers:
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=5)
            server.stop()
    note = f"{count} messages a round, Redis AOF appendfsync always, SimpleWorker"
    return [
        Comparison(
            name="rq end to end, 1 worker",
            ours=medians["one"],
            anchor=medians["threaded"],
            anchor_name="ThreadedMailer (defaults)",
            unit="msg/s",
            notes=[note],
        ),
        Comparison(
            name="rq end to end, 2 workers",
            ours=medians["two"],
            anchor=medians["threaded"],
            anchor_name="ThreadedMailer (defaults)",
            unit="msg/s",
        ),
    ]
