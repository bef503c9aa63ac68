"""Helpers for the debug sink's tests: an in-process sink, HTTP calls, raw SMTP sockets."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from devtools.sink.server import DebugSink
from devtools.sink.store import SinkStore

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_sink(
    *,
    directory: Path | None = None,
    max_messages: int = 1000,
    store: SinkStore | None = None,
    **options: Any,
) -> Iterator[DebugSink]:
    """A DebugSink on free loopback ports, its terminal blocks going to a StringIO."""
    if store is None:
        store = SinkStore(max_messages=max_messages, directory=directory)
    options.setdefault("terminal", io.StringIO())
    options.setdefault("http_port", 0)
    sink = DebugSink(smtp_port=0, store=store, **options)
    with sink:
        yield sink


def reset_mail(
    to: str = "ada@example.test", subject: str = "Reset your password", *, html: str | None = None
) -> EmailMessage:
    """A small reset message with a text part and (by default) an HTML part."""
    message = EmailMessage()
    message["From"] = "App <noreply@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = "<reset-1@example.test>"
    message.set_content("Open https://app.example.test/reset/tok123 within 10 minutes.")
    message.add_alternative(
        html or '<p><a href="https://app.example.test/reset/tok123">Reset</a></p>',
        subtype="html",
    )
    return message


def http(
    sink: DebugSink, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Call the sink's web server; returns (status, headers, body), errors included."""
    assert sink.web is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{sink.web.port}{path}", method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def api(sink: DebugSink, path: str, *, method: str = "GET") -> Any:
    """The JSON body of a successful API call."""
    status, _, body = http(sink, path, method=method)
    assert 200 == status, body
    return json.loads(body)


class RawSMTP:
    """A bare socket speaking SMTP by hand, for input no well-behaved client would send."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        """Write raw bytes."""
        self.socket.sendall(data)

    def reply(self) -> bytes:
        """Read one whole (possibly multi-line) reply."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self._buffer:
                chunk = self.socket.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed by the server after {lines!r}")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def command(self, line: bytes) -> bytes:
        """Send a command line and return the reply."""
        self.send(line + b"\r\n")
        return self.reply()

    def begin_data(
        self, sender: bytes = b"a@example.test", recipient: bytes = b"b@example.test"
    ) -> bytes:
        """EHLO, MAIL FROM, RCPT TO, then DATA; return the reply to DATA."""
        self.command(b"EHLO test")
        self.command(b"MAIL FROM:<" + sender + b">")
        self.command(b"RCPT TO:<" + recipient + b">")
        return self.command(b"DATA")

    def close(self) -> None:
        """Drop the connection without QUIT."""
        self.socket.close()


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate`` (for state in another process or thread) until true or timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(0.01)


class SinkProcess:
    """``python -m devtools.sink`` in a subprocess; stdout and stderr are read in threads.

    Each pipe has exactly one reader, its pump thread, which ends at end of file (the process
    has exited). ``stop`` joins the pumps before closing the pipes, so no pump ever reads a
    closed file (that raced with ``communicate`` and failed a later test with an unhandled
    thread exception).
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.sink", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._stderr: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._pumps = [
            threading.Thread(
                target=self._pump, args=(self.process.stdout, self.lines.put), daemon=True
            ),
            # stderr is drained all along too, so a chatty sink never blocks on a full pipe.
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self._stderr.append), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()
        try:
            banner = self.wait_for_line(r"SMTP on 127\.0\.0\.1:(\d+)")
        except BaseException:
            self.stop()
            raise
        self.smtp_port = int(banner.group(1))

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        try:
            for line in stream:
                put(line.rstrip("\n"))
        except (ValueError, OSError):
            # Defensive: the pipe was closed under us; there is nothing more to read.
            return

    def wait_for_line(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The first line (from now on) matching ``pattern``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r} in {timeout}s; saw {self.seen!r}"
                    ) from None
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self) -> tuple[int, str]:
        """SIGTERM (SIGKILL after 15 s), then the exit status and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        # The process is gone, so both pipes reach end of file and the pumps finish.
        streams = (self.process.stdout, self.process.stderr)
        for pump, stream in zip(self._pumps, streams, strict=True):
            pump.join(timeout=10)
            # A pump still reading (a leaked grandchild holds the pipe) keeps its stream open:
            # closing it under the reader is exactly the race this class avoids.
            if stream is not None and not pump.is_alive():
                stream.close()
        return self.process.returncode, "".join(line + "\n" for line in self._stderr)
