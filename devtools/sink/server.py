"""Wires the debug sink's parts: the capture server, the store, the terminal and the viewer."""

from __future__ import annotations

import socket
import sys
from typing import TextIO

from devtools.sink.store import SinkStore
from devtools.sink.terminal import TerminalPrinter
from devtools.sink.web import SinkWebServer
from mailreset.testing import FaultPlan, SMTPSink

__all__ = ["DebugSink"]

#: aiosmtpd's own default: 32 MiB.
DEFAULT_MAX_SIZE = 32 * 1024 * 1024


class DebugSink:
    """The whole debug sink: SMTP capture, store, terminal blocks and (optionally) the viewer.

    ``smtp_port``/``http_port`` 0 pick free ports; ``http_port=None`` runs without a viewer.
    ``terminal`` receives the blocks (None: print nothing). Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        *,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 8025,
        http_host: str = "127.0.0.1",
        http_port: int | None = 8026,
        store: SinkStore | None = None,
        faults: FaultPlan | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        terminal: TextIO | None = sys.stdout,
        allow_remote: bool = False,
    ) -> None:
        self.store = store if store is not None else SinkStore()
        self.smtp = SMTPSink(
            host=smtp_host,
            port=smtp_port or None,
            faults=faults or FaultPlan(),
            max_size=max_size,
            store=self.store,
        )
        self.web = (
            None
            if http_port is None
            else SinkWebServer(
                self.store, host=http_host, port=http_port, allow_remote=allow_remote
            )
        )
        self.printer = (
            None
            if terminal is None
            else TerminalPrinter(terminal, viewer_url=None if self.web is None else self.web.url)
        )
        if self.printer is not None:
            self.store.on_stored.append(self.printer.submit)

    def start(self) -> DebugSink:
        """Start the viewer, then the SMTP server."""
        # aiosmtpd reports a taken port only after its 5 s start-up timeout: check first.
        _check_free(self.smtp.host, self.smtp.port)
        if self.web is not None:
            self.web.start()
        try:
            self.smtp.start()
        except BaseException:
            if self.web is not None:
                self.web.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop accepting mail, stop the viewer, print what is still queued.

        Then the store's temporary folder of large bodies is removed (a ``--store`` folder
        stays).
        """
        self.smtp.stop()
        if self.web is not None:
            self.web.stop()
        if self.printer is not None:
            self.printer.close()
        self.store.close()

    def __enter__(self) -> DebugSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _check_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The same option asyncio's server sets, so only a listening socket makes this fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(
                error.errno, f"cannot listen on {host}:{port}: {error.strerror}"
            ) from None
