"""Messages accepted per second: our capture servers against aiosmtpd's own ``Sink`` handler.

One smtplib client per server, one connection each, sending the same pre-serialised reset
message with ``sendmail`` (so the client costs as little as possible and the server's work
shows); the servers run side by side in this process and are measured interleaved.

- ``CaptureHandler``: ``mailreset.testing.SMTPSink``, what ``smtp_sink`` runs.
- devtools sink: the whole ``python -m devtools.sink`` minus the viewer's idle thread: the
  ring store, and the terminal block for every message written to /dev/null (the timing
  waits until every block is printed, so the printer's work counts).
- the same with ``--store DIR`` (a file per message), for information.

Target (DESIGN.md): at least 0.8x aiosmtpd's ``Sink``.
"""

from __future__ import annotations

import os
import smtplib
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from devtools.bench.harness import Comparison, Options, interleaved_medians
from devtools.sink.server import DebugSink
from devtools.sink.store import SinkStore
from mailreset.testing import SMTPSink
from mailreset.testing._smtp import free_port

SENDER = "noreply@example.test"
RECIPIENTS = ["ada@example.test"]


def _reset_message() -> bytes:
    message = EmailMessage()
    message["From"] = f"App <{SENDER}>"
    message["To"] = RECIPIENTS[0]
    message["Subject"] = "Reset your password"
    message["Message-ID"] = "<bench@example.test>"
    link = "https://app.example.test/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
    message.set_content(f"Hello Ada,\n\nOpen {link} within 10 minutes.\n")
    message.add_alternative(f'<p>Hello Ada,</p><p><a href="{link}">Reset</a></p>', subtype="html")
    return message.as_bytes()


def _measure(
    client: smtplib.SMTP, raw: bytes, count: int, settle: Callable[[], None]
) -> Callable[[], float]:
    def once() -> float:
        start = time.perf_counter()
        for _ in range(count):
            client.sendmail(SENDER, RECIPIENTS, raw)
        settle()
        return count / (time.perf_counter() - start)

    return once


def run(options: Options) -> list[Comparison]:
    """Measure the three servers and aiosmtpd's Sink in one run, interleaved."""
    count = 200 if options.quick else 2000
    raw = _reset_message()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
    folder = tempfile.TemporaryDirectory(prefix="mailreset-bench-sink-")
    anchor_port = free_port()
    anchor = Controller(
        Sink(), hostname="127.0.0.1", port=anchor_port, decode_data=False, enable_SMTPUTF8=True
    )
    capture = SMTPSink()
    debug = DebugSink(smtp_port=0, http_port=None, terminal=devnull)
    stored = DebugSink(
        smtp_port=0,
        http_port=None,
        terminal=devnull,
        store=SinkStore(directory=folder.name, max_messages=count),
    )
    clients: list[smtplib.SMTP] = []
    try:
        anchor.start()
        capture.start()
        debug.start()
        stored.start()

        def connect(port: int) -> smtplib.SMTP:
            client = smtplib.SMTP("127.0.0.1", port, timeout=30)
            client.ehlo()
            clients.append(client)
            return client

        def settle_debug() -> None:
            assert debug.printer is not None
            debug.printer.flush(60)

        def settle_stored() -> None:
            assert stored.printer is not None
            stored.printer.flush(60)
            stored.store.clear()

        medians = interleaved_medians(
            {
                "aiosmtpd Sink": _measure(connect(anchor_port), raw, count, lambda: None),
                "CaptureHandler": _measure(connect(capture.port), raw, count, capture.store.clear),
                "devtools sink": _measure(connect(debug.smtp.port), raw, count, settle_debug),
                "devtools sink --store": _measure(
                    connect(stored.smtp.port), raw, count, settle_stored
                ),
            },
            options.rounds,
        )
    finally:
        for client in clients:
            client.close()
        stored.stop()
        debug.stop()
        capture.stop()
        anchor.stop()
        devnull.close()
        folder.cleanup()

    base = medians["aiosmtpd Sink"]
    note = (
        f"{count} messages of {len(raw)} bytes, one connection, sendmail(), "
        f"{options.rounds} rounds"
    )
    return [
        Comparison(
            "sink: smtp_sink's CaptureHandler",
            medians["CaptureHandler"],
            base,
            "aiosmtpd Sink",
            "msg/s",
            target=0.8,
            notes=[note],
        ),
        Comparison(
            "sink: devtools sink (ring + terminal)",
            medians["devtools sink"],
            base,
            "aiosmtpd Sink",
            "msg/s",
            target=0.8,
        ),
        Comparison(
            "sink: devtools sink --store DIR",
            medians["devtools sink --store"],
            base,
            "aiosmtpd Sink",
            "msg/s",
            notes=["a file per message (temporary file + rename), for information"],
        ),
    ]
