"""A real redis-server on loopback and real RQ workers, for the RQ tests and the benchmark.

Every wait here is bounded; nothing sleeps to synchronise (waits poll Redis with a deadline).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from mailreset.testing._smtp import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
INSTALL_HINT = (
    "redis-server is not installed: `sudo apt-get install redis-server` (Debian/Ubuntu) or "
    "`brew install redis`; .ci/run installs it on a fresh machine"
)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; raise TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.01)


class RedisServer:
    """One redis-server process on 127.0.0.1 and a free port, its data in ``directory``.

    AOF with ``appendfsync always``: Redis answers a write only once it is on disk, so what a
    client was told is stored survives a crash (SIGKILL) of the server.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and return once it answers PING (within 10 s)."""
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "logfile": str(self.directory / "redis.log"),
        }
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen([REDIS_SERVER, *arguments], stdin=subprocess.DEVNULL)
        wait_until(self._answers, 10.0, f"redis-server on port {self.port} answering")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown save, only what is already on disk stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


def start_worker(
    redis_url: str,
    smtp_host: str,
    smtp_port: int,
    log_path: Path,
    *,
    burst: bool = True,
    queue: str = "mail",
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``rq worker`` (SimpleWorker, the SMTP server in its MAIL_* environment).

    The worker leads its own process group, so a test can kill it whole.
    """
    env = {
        **os.environ,
        "MAIL_SERVER": smtp_host,
        "MAIL_PORT": str(smtp_port),
        "MAIL_TIMEOUT": "30",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url]
    command += ["--worker-class", "rq.worker.SimpleWorker", "--name", f"test-{uuid.uuid4().hex}"]
    # A burst worker logs its shutdown (INFO), which finish() watches for.
    command += ["--logging_level", "INFO" if burst else "WARNING"]
    if burst:
        command.append("--burst")
    command.append(queue)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(workers: list[subprocess.Popen[bytes]], timeout: float, log_path: Path) -> None:
    """Wait for burst workers to exit cleanly; kill and report them after ``timeout``.

    A worker that logged the end of its shutdown but has not exited 2 s later is killed and
    counted as done: RQ 3 closes its pub/sub connection while the listening thread may still
    wait out a 60 s poll, which holds the process (and the test) for up to a minute.
    """
    deadline = time.monotonic() + timeout
    lingering: list[subprocess.Popen[bytes]] = []
    for worker in workers:
        shut_down_at: float | None = None
        marker = f"{_name(worker)}: unsubscribing from channel"
        while worker.poll() is None:
            now = time.monotonic()
            if now > deadline:
                for other in workers:
                    kill_group(other)
                raise TimeoutError(
                    f"rq workers still running after {timeout}s; log:\n"
                    + log_path.read_text(errors="replace")[-4000:]
                )
            if shut_down_at is None and marker in log_path.read_text(errors="replace"):
                shut_down_at = now
            if shut_down_at is not None and now - shut_down_at > 2.0:
                kill_group(worker)
                lingering.append(worker)
                break
            time.sleep(0.1)
    codes = [worker.returncode for worker in workers if worker not in lingering]
    if any(codes):
        raise RuntimeError(
            f"rq workers exited with {codes}; log:\n"
            + log_path.read_text(errors="replace")[-4000:]
        )


def _name(worker: subprocess.Popen[bytes]) -> str:
    arguments = [str(part) for part in worker.args]
    return str(arguments[arguments.index("--name") + 1])


def kill_group(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and every process it started (its process group)."""
    if worker.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
