"""Helpers of the reliability tests: TLS material and a counting loopback proxy."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import Counter
from email.message import Message

import trustme

from mailreset.transports import Envelope
from tests.mail_factory import make_envelope

__all__ = ["CommandCounter", "Failures", "LimitingProxy", "TLSPair", "outgoing"]


def outgoing(number: int, **options: str) -> Envelope:
    """What ``Transport.send`` takes for message ``number``."""
    return make_envelope(number, **options)


class Failures:
    """A thread-safe ``on_failure`` recorder that can also raise, as a buggy callback does."""

    def __init__(self, raising: BaseException | None = None) -> None:
        self.calls: list[tuple[Message, BaseException]] = []
        self.raising = raising
        self._lock = threading.Lock()

    def __call__(self, message: Message, error: BaseException) -> None:
        with self._lock:
            self.calls.append((message, error))
        if self.raising is not None:
            raise self.raising


class TLSPair:
    """A trustme CA with a server context for localhost/127.0.0.1 and its CA as a PEM file."""

    def __init__(self, directory: str) -> None:
        self.ca = trustme.CA()
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.server_context)
        self.ca_file = f"{directory}/ca.pem"
        self.ca.cert_pem.write_to_path(self.ca_file)


class CommandCounter:
    """A plain-text TCP proxy on 127.0.0.1 that counts the SMTP commands clients send.

    Put it between a client and a plain (no TLS) sink to see each command on the wire:
    ``counts["AUTH"]`` is how many AUTH commands went out, whatever smtplib did inside.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.counts: Counter[str] = Counter()
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CommandCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):  # wakes the accept() below (close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
                if count:
                    pending += chunk
                    *lines, pending = pending.split(b"\r\n")
                    with self._lock:
                        for line in lines:
                            verb = line.split(b" ", 1)[0].decode("ascii", "replace").upper()
                            self.counts[verb] += 1
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


class LimitingProxy:
    """A TCP proxy on 127.0.0.1 that lets ``limit`` connections through at once, as a server
    with a per-client connection limit does: one more gets ``421`` and is closed.

    ``limit`` may be changed while it runs; ``refused`` counts the 421s, ``peak`` the most
    connections open at once since :meth:`reset_peak`.
    """

    def __init__(self, target_port: int, limit: int) -> None:
        self.target_port = target_port
        self.limit = limit
        self.refused = 0
        self.peak = 0
        self._open = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LimitingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):  # wakes the accept() below (close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)

    def reset_peak(self) -> None:
        with self._lock:
            self.peak = self._open

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                over = self._open >= self.limit
                if over:
                    self.refused += 1
                else:
                    self._open += 1
                    self.peak = max(self.peak, self._open)
            if over:
                with contextlib.suppress(OSError):
                    client.sendall(b"421 4.7.0 Error: too many connections from 127.0.0.1\r\n")
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            ends = [2]
            threading.Thread(target=self._pipe, args=(client, server, ends), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, ends), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, ends: list[int]) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        with self._lock:
            ends[0] -= 1
            if ends[0] == 0:  # both directions done: the connection is closed
                self._open -= 1
                source.close()
                target.close()
