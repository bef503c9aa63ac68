"""Serve an ASGI app with uvicorn from a thread on a free loopback port (lifespan run)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def bound_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the kernel picked (no race for a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_asgi(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn on ``sock`` (default: a fresh ``bound_socket()``); yield its URL.

    The lifespan runs at start and at stop, as in production: the mailer is made and closed.
    Pass ``sock`` when the app must know its own URL before it starts (its reset links).
    """
    import uvicorn

    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
