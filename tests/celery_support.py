"""Real ``celery -A mailreset.celery worker`` processes, for the Celery tests and the benchmark.

The redis-server comes from :mod:`tests.rq_support`. Every wait here is bounded; a worker
leads its own process group, so a test can kill it whole (the pool's children included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.rq_support import kill_group


def __getattr__(name: str) -> Any:
    # `celery -A tests.celery_support.user_app worker`: an application's own app, pickle by
    # default, with mailreset's task registered as the README tells (made on first use, so
    # that importing this module needs no Celery).
    if name != "user_app":
        raise AttributeError(name)
    return make_user_app(os.environ["MAILRESET_CELERY_BROKER"])


def make_user_app(url: str) -> Any:
    """A Celery app as a project has one: pickle by default, JSON accepted, mailreset's task."""
    import celery

    from mailreset.celery import register_task

    app = celery.Celery("userapp", broker=url, backend=url, set_as_current=False)
    app.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    register_task(app)
    return app


def start_worker(
    broker_url: str,
    smtp_host: str,
    smtp_port: int,
    log_path: Path,
    *,
    queue: str = "mail",
    visibility_timeout: float = 60.0,
    pool: str = "prefork",
    app: str = "mailreset.celery",
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``celery -A {app} worker`` (one process in its pool) on ``queue``.

    The broker and the SMTP server come through the environment (``MAILRESET_CELERY_*``,
    ``MAIL_*``), as the README tells a deployment to pass them.
    """
    env = {
        **os.environ,
        "MAILRESET_CELERY_BROKER": broker_url,
        "MAILRESET_CELERY_QUEUE": queue,
        "MAILRESET_CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
        "MAIL_SERVER": smtp_host,
        "MAIL_PORT": str(smtp_port),
        "MAIL_TIMEOUT": "30",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", app, "worker"]
    command += [f"--pool={pool}", "--concurrency=1", "--loglevel=INFO", "-Q", queue]
    # No chatter between workers at start-up (mingle waits for replies; gossip and heartbeats
    # wake every worker for every other one): each worker only consumes its queue.
    command += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_workers(workers: list[subprocess.Popen[bytes]], log_path: Path) -> None:
    """Warm shutdown (SIGTERM: finish the current task, then exit); SIGKILL after 20 s."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20.0
    stuck = []
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stuck.append(worker.pid)
            kill_group(worker)
    if stuck:
        raise TimeoutError(
            f"celery workers {stuck} ignored SIGTERM for 20 s; log:\n"
            + log_path.read_text(errors="replace")[-4000:]
        )


def smtp_client_sockets(port: int) -> dict[int, str]:
    """The TCP client sockets to 127.0.0.1:``port`` (Linux): each one's local port and state.

    States are the kernel's codes: ``01`` established, ``06`` TIME_WAIT (closed a moment ago);
    the others (``04``/``05`` FIN_WAIT, ``08`` CLOSE_WAIT, ``09`` LAST_ACK) are a close under
    way. A local port names one connection, so two readings tell which connections are new.
    """
    wanted = f":{port:04X}"
    sockets: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields: sl, local address, remote address, state, ...
            if fields[2].endswith(wanted):
                sockets[int(fields[1].rsplit(":", 1)[1], 16)] = fields[3]
    return sockets


def smtp_clients(port: int) -> int:
    """How many TCP client sockets to 127.0.0.1:``port`` are established (Linux)."""
    return sum(state == "01" for state in smtp_client_sockets(port).values())
