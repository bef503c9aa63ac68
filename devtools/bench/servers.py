"""SMTP servers for the benchmarks, each in its own process so it never competes for our GIL.

:func:`fast_server` is Postfix's ``smtp-sink`` when it is installed (a C sink that offers
PIPELINING; DESIGN.md's reference figures were measured against it), else the capture sink
(aiosmtpd) in a child process. On Debian and Ubuntu, ``smtp-sink`` comes with the ``postfix``
package (``apt-get install postfix``; stop and disable the postfix daemon afterwards, only the
``/usr/sbin/smtp-sink`` binary is needed); on macOS, Homebrew's postfix has it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Protocol

from mailreset import SMTPSettings
from mailreset.testing._smtp import free_port

SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/libexec/postfix/smtp-sink")


class BenchServer(Protocol):
    """A server the benchmarks send to, and a count of what it received."""

    name: str
    pipelining: bool
    settings: SMTPSettings

    def count(self) -> int:
        """Messages accepted so far."""
        ...

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Wait (bounded) until ``count`` messages were accepted; return the count."""
        ...

    def close(self) -> None:
        """Stop the server."""
        ...


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def smtp_sink_path() -> str | None:
    """Where Postfix's ``smtp-sink`` is, or None."""
    found = shutil.which("smtp-sink")
    if found:
        return found
    return next((path for path in SMTP_SINK_PATHS if os.access(path, os.X_OK)), None)


class PostfixSink:
    """Postfix's ``smtp-sink`` on a free loopback port; ``-c`` counters give the count."""

    name = "Postfix smtp-sink"
    pipelining = True

    def __init__(self, path: str, *, backlog: int = 100) -> None:
        self.port = free_port()
        command = [path, "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to keep root privileges
        command += [f"127.0.0.1:{self.port}", str(backlog)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        self._messages = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_counters, daemon=True)
        self._reader.start()
        _wait_listening(self.port)
        self.settings = SMTPSettings(host="127.0.0.1", port=self.port, local_hostname="bench")

    def _read_counters(self) -> None:
        # "-c" writes "sess=N quit=N mesg=N\r" after every session, QUIT and message.
        stream = self.process.stdout
        assert stream is not None
        pending = b""
        while chunk := stream.read(4096):
            *lines, pending = (pending + chunk).split(b"\r")
            for line in reversed(lines):
                if b"mesg=" in line:
                    with self._changed:
                        self._messages = int(line.rsplit(b"mesg=", 1)[1])
                        self._changed.notify_all()
                    break

    def count(self) -> int:
        """Messages accepted so far (as of smtp-sink's last counter line)."""
        with self._changed:
            return self._messages

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Wait until ``count`` messages were accepted, or ``timeout`` seconds passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._messages >= count, timeout)
            return self._messages

    def close(self) -> None:
        """Stop smtp-sink."""
        self.process.terminate()
        self.process.wait(10)
        self._reader.join(5)


_CAPTURE_SINK = """
import sys
from mailreset.testing import SMTPSink
sink = SMTPSink(pipelining=%r).start()
print(sink.port, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(len(sink.store), flush=True)
sink.stop()
"""


class CaptureSink:
    """The capture sink (aiosmtpd) in a child process; ``count()`` asks how many it holds."""

    name = "aiosmtpd capture sink (child process)"

    def __init__(self, *, pipelining: bool = False) -> None:
        self.pipelining = pipelining
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CAPTURE_SINK % pipelining],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.settings = SMTPSettings(host="127.0.0.1", port=self.port, local_hostname="bench")

    def count(self) -> int:
        """Messages the sink holds."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Poll until ``count`` messages arrived, or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        seen = self.count()
        while seen < count and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.count()
        return seen

    def close(self) -> None:
        """Stop the child process."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def fast_server() -> BenchServer:
    """Postfix's smtp-sink when installed, else the aiosmtpd capture sink in a child."""
    path = smtp_sink_path()
    if path is not None:
        return PostfixSink(path)
    return CaptureSink()
