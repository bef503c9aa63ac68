"""CeleryMailer end to end, with 1 and 2 Celery workers, against ThreadedMailer in the same run.

The same measure as ``bench_rq`` (run ``python -m devtools.bench rq celery`` to see the two
side by side): from the first ``send`` until every Future settled (the server took every
message). The workers are warm ``celery -A mailreset.celery worker --pool=prefork -c 1``
processes (their SMTP settings in MAIL_*) started before the clock runs; Redis is the broker
and the result backend, with AOF and ``appendfsync always`` as the README recommends. The
capture sink (aiosmtpd) runs in a child process of its own. Needs a ``redis-server`` binary;
without one the benchmark prints why and measures nothing.
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path

from tests.celery_support import start_worker, stop_workers
from tests.rq_support import REDIS_SERVER, RedisServer

from devtools.bench.bench_rq import end_to_end, remote_sink
from devtools.bench.harness import Comparison, Options, interleaved_medians, reset_messages
from mailreset import SMTPSettings, ThreadedMailer
from mailreset.celery import CeleryMailer


def run(options: Options) -> list[Comparison]:
    """Messages per second end to end: CeleryMailer with 1 and 2 workers, ThreadedMailer."""
    if not Path(REDIS_SERVER).exists():
        print("bench_celery: no redis-server; apt-get install redis-server", file=sys.stderr)
        return []
    count = 60 if options.quick else 300
    messages = reset_messages(count, tag="celery.", html=False)
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as directory, remote_sink() as port:
        folder = Path(directory)
        server = RedisServer(folder).start()
        log = folder / "workers.log"
        workers = [
            start_worker(server.url, "127.0.0.1", port, log, queue=queue)
            for queue in ("one", "two", "two")
        ]
        settings = SMTPSettings(host="127.0.0.1", port=port, local_hostname="bench")
        one = CeleryMailer(server.url, queue="one", poll_interval=0.01)
        two = CeleryMailer(server.url, queue="two", poll_interval=0.01)
        threaded = ThreadedMailer(settings)
        try:
            # Warm up: every worker connected to Redis and to the SMTP server once (a few
            # messages on "two", so that both of its workers take some).
            for mailer in (one, two, two, two, two, threaded):
                mailer.send(messages[0])
            for mailer in (one, two, threaded):
                mailer.flush(timeout=120.0)
            if any(worker.poll() is not None for worker in workers):
                raise RuntimeError("a celery worker died: " + log.read_text(errors="replace"))
            mailers = {"one": one, "two": two, "threaded": threaded}
            medians = interleaved_medians(
                {
                    name: partial(end_to_end(mailer.send, partial(mailer.flush, 60.0)), messages)
                    for name, mailer in mailers.items()
                },
                options.rounds,
            )
        finally:
            one.close()
            two.close()
            threaded.close(timeout=30.0)
            stop_workers(workers, log)
            server.stop()
    note = f"{count} messages a round, Redis AOF appendfsync always, prefork -c 1 per worker"
    return [
        Comparison(
            name=f"celery end to end, {size} worker{'s' if size > 1 else ''}",
            ours=medians[name],
            anchor=medians["threaded"],
            anchor_name="ThreadedMailer (defaults)",
            unit="msg/s",
            notes=[note] if size == 1 else [],
        )
        for name, size in (("one", 1), ("two", 2))
    ]
