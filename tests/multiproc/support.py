"""An example app under gunicorn with 4 workers, on loopback and a free port.

Every wait is bounded; the server's log is shown when it does not come up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailreset.testing._smtp import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET_KEY = "session-key-for-the-multiprocess-tests-abcdef"
TOKEN_KEY = "token-key-for-the-multiprocess-tests-abcdefgh"
PASSWORD_COST = 2**12  # scrypt's cost: low, so the tests stay fast
WORKERS = 4


class Served:
    """A running example: its base URL and the gunicorn master process."""

    def __init__(self, base: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base, self.process, self.log = base, process, log

    def log_text(self) -> str:
        """The end of gunicorn's log (workers' tracebacks land here)."""
        return self.log.read_text(errors="replace")[-6000:]


@contextlib.contextmanager
def gunicorn(
    example: str,
    directory: Path,
    database: Path,
    smtp_port: int,
    limiter_storage: str,
    *,
    preload: bool = False,
    proxy_hops: int = 0,
) -> Iterator[Served]:
    """Serve ``examples.<example>_app`` with 4 gunicorn workers until the block ends."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings: dict[str, Any] = {
        "DATABASE": str(database),
        "SECRET_KEY": SECRET_KEY,
        "MAILRESET_SECRET_KEY": TOKEN_KEY,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "MAILRESET_URL": base + "/reset/{token}",
        "PASSWORD_COST": PASSWORD_COST,
        "MAILRESET_LIMITER_STORAGE": limiter_storage,
        "PROXY_HOPS": proxy_hops,
    }
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, paths)),
        **{f"EXAMPLE_{name}": str(value) for name, value in settings.items()},
    }
    command = [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS)]
    command += ["--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), "--timeout", "60"]
    command += ["--graceful-timeout", "10", "--log-level", "warning"]
    if preload:
        command.append("--preload")
    command.append(f"examples.{example}_app.app:create_app()")
    log = directory / f"gunicorn-{example}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    served = Served(base, process, log)
    try:
        _wait_for_workers(served, timeout=90.0)
        yield served
    finally:
        stop(process)


def _wait_for_workers(served: Served, timeout: float) -> None:
    """Return once the app answers and all workers are up; else raise with the log."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {served.process.returncode}:\n{served.log_text()}"
            )
        try:
            if httpx.get(served.base + "/login", timeout=5).status_code == 200 and (
                len(worker_pids(served.process.pid)) >= WORKERS
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(served.process)
    raise TimeoutError(f"gunicorn did not serve within {timeout}s:\n{served.log_text()}")


def worker_pids(master: int) -> list[int]:
    """The process ids of the master's children (its workers), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split
            # after its last ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == master:
                pids.append(int(stat.parent.name))
    return pids


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gunicorn (SIGTERM: workers finish their requests), SIGKILL after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
